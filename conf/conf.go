// Package conf holds crimux's typed configuration: built-in defaults, loading
// from a file, CRIMUX_* environment variables and flags with viper, and
// validation whose errors name the key at fault.
package conf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultConfigFile is read when no --config is given; a missing default file is not an error.
const DefaultConfigFile = "/etc/crimux/config.toml"

// Config is the whole of crimux's configuration.
type Config struct {
	// Socket is the unix socket the CRI gRPC server listens on.
	Socket string `mapstructure:"socket"`
	// RootDir holds persistent state: sandbox and container records.
	RootDir string `mapstructure:"root_dir"`
	// StateDir holds state that must not survive a reboot: netns mounts, IO fifos.
	StateDir string `mapstructure:"state_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// DefaultHandler serves RunPodSandbox requests with an empty runtime_handler.
	DefaultHandler string `mapstructure:"default_handler"`
	// SandboxImage is the pause image; a built-in one is used when it can't be pulled.
	SandboxImage string `mapstructure:"sandbox_image"`
	// PauseBinary is the static pause program the built-in sandbox image is made of.
	PauseBinary string `mapstructure:"pause_binary"`
	// RegistryHostsDir holds <host>/hosts.toml files in containerd's format.
	RegistryHostsDir string `mapstructure:"registry_hosts_dir"`
	// CgroupDriver is cgroupfs or systemd; it is reported to the kubelet by RuntimeConfig.
	CgroupDriver string `mapstructure:"cgroup_driver"`

	Containerd Containerd         `mapstructure:"containerd"`
	CNI        CNI                `mapstructure:"cni"`
	Streaming  Streaming          `mapstructure:"streaming"`
	Debug      Debug              `mapstructure:"debug"`
	Metrics    Metrics            `mapstructure:"metrics"`
	Handlers   map[string]Handler `mapstructure:"handlers"`
}

// Containerd says where the containerd daemon is and which namespace crimux owns.
type Containerd struct {
	Address   string `mapstructure:"address"`
	Namespace string `mapstructure:"namespace"`
	// Timeout bounds the first connection.
	Timeout time.Duration `mapstructure:"timeout"`
}

// CNI configures the shared network layer.
type CNI struct {
	BinDirs []string `mapstructure:"bin_dirs"`
	ConfDir string   `mapstructure:"conf_dir"`
	// Timeout bounds one ADD or DEL.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Streaming configures the Exec/Attach/PortForward HTTP server.
type Streaming struct {
	// Address is host:port; port 0 picks a free port.
	Address string `mapstructure:"address"`
	// IdleTimeout closes idle streaming connections.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// TLSCertFile and TLSKeyFile make the server speak TLS.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
	// AllowInsecureRemote lets Address be other than loopback without TLS:
	// exec, attach and port-forward then travel the network in plain text.
	AllowInsecureRemote bool `mapstructure:"allow_insecure_remote"`
}

// Debug configures the profiling endpoint.
type Debug struct {
	// Address is host:port of a net/http/pprof server; "" = off. It must
	// be a loopback address unless AllowRemote is set.
	Address     string `mapstructure:"address"`
	AllowRemote bool   `mapstructure:"allow_remote"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address is host:port where /metrics is served; "" = off. It must be a
	// loopback address unless AllowRemote is set.
	Address     string `mapstructure:"address"`
	AllowRemote bool   `mapstructure:"allow_remote"`
}

// Handler is one runtime handler (a RuntimeClass handler name): the driver
// that runs it, the CNI config dir of its pods (crimux's network layer) and
// the driver's own options, which the driver decodes and checks.
type Handler struct {
	// Driver is the backend driver's name, one cmd/crimux registered.
	Driver string `mapstructure:"driver"`
	// CNIConfDir overrides cni.conf_dir for this handler's pods.
	CNIConfDir string `mapstructure:"cni_conf_dir"`
	// Options are every other key of the handler's table, the driver's.
	Options map[string]any `mapstructure:",remain"`
}

// Driver is what conf knows of a backend driver cmd/crimux registered.
type Driver struct {
	// Name is how [handlers.*] driver names it.
	Name string
	// Check decodes and checks a handler's options without touching the
	// machine, and returns them with the driver's defaults filled in. Each
	// error names its key below the handler ("runtime_path: ...").
	Check func(handler string, options map[string]any) (map[string]any, []error)
	// Deferred lists the checks of a handler that only the running driver
	// makes (binaries it runs, daemons it talks to); config check says so.
	Deferred func(handler string, options map[string]any) []string
	// Defaults are the handlers the driver offers when no [handlers.*]
	// table is configured.
	Defaults func() map[string]Handler
}

// Defaults returns the built-in configuration crimux runs with when no file exists.
func Defaults() map[string]any {
	return map[string]any{
		"socket":                          "/run/crimux/crimux.sock",
		"root_dir":                        "/var/lib/crimux",
		"state_dir":                       "/run/crimux",
		"log_level":                       "info",
		"default_handler":                 "runc",
		"sandbox_image":                   "registry.k8s.io/pause:3.10",
		"pause_binary":                    "",
		"registry_hosts_dir":              "/etc/crimux/certs.d",
		"cgroup_driver":                   "cgroupfs",
		"containerd.address":              "/run/containerd/containerd.sock",
		"containerd.namespace":            "crimux",
		"containerd.timeout":              "10s",
		"cni.bin_dirs":                    []string{"/opt/cni/bin", "/usr/lib/cni"},
		"cni.conf_dir":                    "/etc/cni/net.d",
		"cni.timeout":                     "60s",
		"streaming.address":               "127.0.0.1:0",
		"streaming.idle_timeout":          "4h",
		"streaming.tls_cert_file":         "",
		"streaming.tls_key_file":          "",
		"streaming.allow_insecure_remote": false,
		"debug.address":                   "",
		"debug.allow_remote":              false,
		"metrics.address":                 "",
		"metrics.allow_remote":            false,
	}
}

// Flags returns the command-line flags that override configuration keys.
func Flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("crimux", pflag.ContinueOnError)
	fs.String("config", "", "config file (TOML or YAML); default "+DefaultConfigFile+" if it exists")
	fs.String("socket", "", "CRI socket path (key socket)")
	fs.String("root-dir", "", "persistent state directory (key root_dir)")
	fs.String("state-dir", "", "volatile state directory (key state_dir)")
	fs.String("log-level", "", "debug|info|warn|error (key log_level)")
	fs.String("containerd-address", "", "containerd socket (key containerd.address)")
	fs.String("containerd-namespace", "", "containerd namespace (key containerd.namespace)")
	fs.String("default-handler", "", "handler for an empty runtime_handler (key default_handler)")
	fs.String("streaming-address", "", "host:port of the streaming server (key streaming.address)")
	return fs
}

// defaultFile is DefaultConfigFile; tests point it elsewhere.
var defaultFile = DefaultConfigFile

var flagKeys = map[string]string{
	"socket":               "socket",
	"root-dir":             "root_dir",
	"state-dir":            "state_dir",
	"log-level":            "log_level",
	"containerd-address":   "containerd.address",
	"containerd-namespace": "containerd.namespace",
	"default-handler":      "default_handler",
	"streaming-address":    "streaming.address",
}

// Load reads the configuration: defaults, then the file, then CRIMUX_* variables,
// then flags that were set. It validates the result, each handler's options
// by its driver (one of drivers). fs may be nil.
func Load(fs *pflag.FlagSet, environ []string, drivers ...Driver) (*Config, error) {
	v := viper.New()
	for k, val := range Defaults() {
		v.SetDefault(k, val)
	}
	file := ""
	if fs != nil {
		file, _ = fs.GetString("config")
	}
	explicit := file != ""
	if !explicit {
		file = defaultFile
	}
	if _, err := os.Stat(file); err == nil {
		v.SetConfigFile(file)
		switch strings.ToLower(filepath.Ext(file)) {
		case ".yaml", ".yml":
			v.SetConfigType("yaml")
		default:
			v.SetConfigType("toml")
		}
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config file %q: %w", file, err)
		}
	} else if explicit {
		return nil, fmt.Errorf("read config file %q: %w", file, err)
	}
	if err := applyEnv(v, environ); err != nil {
		return nil, err
	}
	if fs != nil {
		for flag, key := range flagKeys {
			if f := fs.Lookup(flag); f != nil && f.Changed {
				v.Set(key, f.Value.String())
			}
		}
	}
	var c Config
	dec := func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	}
	if err := v.Unmarshal(&c, dec); err != nil {
		return nil, fmt.Errorf("config: %s", cleanDecodeError(err))
	}
	if len(c.Handlers) == 0 {
		c.Handlers = map[string]Handler{}
		for _, d := range drivers {
			if d.Defaults != nil {
				for name, h := range d.Defaults() {
					c.Handlers[name] = h
				}
			}
		}
	}
	if err := c.validate(drivers); err != nil {
		return nil, err
	}
	return &c, nil
}

// applyEnv maps CRIMUX_A_B=value onto key a.b (or a_b when that key exists).
// Unknown variables are errors: a typo must not be silently ignored.
func applyEnv(v *viper.Viper, environ []string) error {
	known := map[string]string{}
	for k := range Defaults() {
		known["CRIMUX_"+strings.ToUpper(strings.NewReplacer(".", "_").Replace(k))] = k
	}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "CRIMUX_") {
			continue
		}
		key, ok := known[name]
		if !ok {
			// Test and tooling variables share the prefix; only reject ones that look like keys.
			if strings.HasPrefix(name, "CRIMUX_TEST_") {
				continue
			}
			return fmt.Errorf("environment variable %s: no such configuration key", name)
		}
		if _, isList := Defaults()[key].([]string); isList {
			v.Set(key, strings.Split(val, ","))
			continue
		}
		v.Set(key, val)
	}
	return nil
}

func cleanDecodeError(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "decoding failed due to the following error(s):\n\n", "")
	s = strings.ReplaceAll(s, "has invalid keys", "has unknown keys")
	return s
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// IsDNSLabel reports whether s is an RFC 1123 label, which RuntimeClass handlers must be.
func IsDNSLabel(s string) bool { return dnsLabel.MatchString(s) }

// validate checks the configuration, each handler's options by its driver
// (filling in the driver's defaults); each error names its key.
func (c *Config) validate(drivers []Driver) error {
	var errs []error
	need := func(key, val string) {
		if val == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", key))
		}
	}
	absolute := func(key, val string) {
		if val != "" && !filepath.IsAbs(val) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", key, val))
		}
	}
	need("socket", c.Socket)
	absolute("socket", c.Socket)
	need("root_dir", c.RootDir)
	absolute("root_dir", c.RootDir)
	need("state_dir", c.StateDir)
	absolute("state_dir", c.StateDir)
	absolute("registry_hosts_dir", c.RegistryHostsDir)
	absolute("cni.conf_dir", c.CNI.ConfDir)
	need("containerd.address", c.Containerd.Address)
	need("containerd.namespace", c.Containerd.Namespace)
	need("sandbox_image", c.SandboxImage)
	if c.Containerd.Namespace == "k8s.io" {
		errs = append(errs, errors.New("containerd.namespace: k8s.io belongs to containerd's built-in CRI plugin; use a namespace of crimux's own"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("cgroup_driver: %q is not one of cgroupfs, systemd", c.CgroupDriver))
	}
	errs = append(errs, c.Streaming.validate()...)
	if a := c.Debug.Address; a != "" {
		if host, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("debug.address: %q is not host:port: %v", a, err))
		} else if !isLoopback(host) && !c.Debug.AllowRemote {
			errs = append(errs, fmt.Errorf("debug.address: %q is not a loopback address: profiles show crimux's memory; set debug.allow_remote = true to serve them there", a))
		}
	}
	if a := c.Metrics.Address; a != "" {
		if host, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("metrics.address: %q is not host:port: %v", a, err))
		} else if !isLoopback(host) && !c.Metrics.AllowRemote {
			errs = append(errs, fmt.Errorf("metrics.address: %q is not a loopback address: the metrics name every pod; set metrics.allow_remote = true to serve them there", a))
		}
	}
	names := c.HandlerNames()
	for _, name := range names {
		h := c.Handlers[name]
		key := "handlers." + name
		if !IsDNSLabel(name) {
			errs = append(errs, fmt.Errorf("%s: handler name %q is not a DNS label (lower-case letters, digits and '-', at most 63)", key, name))
		}
		if h.Driver == "" && len(drivers) > 0 {
			h.Driver = drivers[0].Name // the first driver cmd registered is the default
			c.Handlers[name] = h
		}
		d, ok := driverNamed(drivers, h.Driver)
		if !ok {
			errs = append(errs, fmt.Errorf("%s.driver: unknown driver %q (known: %s)", key, h.Driver, strings.Join(driverNames(drivers), ", ")))
			continue
		}
		if d.Check != nil {
			opts, herrs := d.Check(name, h.Options)
			for _, err := range herrs {
				errs = append(errs, fmt.Errorf("%s.%w", key, err))
			}
			h.Options = opts
			c.Handlers[name] = h
		}
		absolute(key+".cni_conf_dir", h.CNIConfDir)
	}
	if _, ok := c.Handlers[c.DefaultHandler]; !ok {
		errs = append(errs, fmt.Errorf("default_handler: %q is not a configured handler (configured: %s)", c.DefaultHandler, strings.Join(names, ", ")))
	}
	return errors.Join(errs...)
}

// validate checks the streaming server's address and TLS files: a server
// reachable from the network must speak TLS unless the operator said otherwise.
func (s Streaming) validate() []error {
	var errs []error
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		return []error{fmt.Errorf("streaming.address: %q is not host:port: %v", s.Address, err)}
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("streaming.tls_cert_file, streaming.tls_key_file: give both or neither"))
	}
	for _, f := range []struct{ key, p string }{{"streaming.tls_cert_file", s.TLSCertFile}, {"streaming.tls_key_file", s.TLSKeyFile}} {
		if f.p == "" {
			continue
		}
		if _, err := os.Stat(f.p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", f.key, err))
		}
	}
	if !isLoopback(host) && s.TLSCertFile == "" && !s.AllowInsecureRemote {
		errs = append(errs, fmt.Errorf("streaming.address: %q is not a loopback address: exec, attach and port-forward would reach the network in plain text; "+
			"set streaming.tls_cert_file and streaming.tls_key_file, or streaming.allow_insecure_remote = true", s.Address))
	}
	return errs
}

// isLoopback: host is "localhost" or a loopback IP.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Deferred lists, for each handler, the checks only its running driver makes.
func (c *Config) Deferred(drivers ...Driver) []string {
	var out []string
	for _, name := range c.HandlerNames() {
		h := c.Handlers[name]
		if d, ok := driverNamed(drivers, h.Driver); ok && d.Deferred != nil {
			for _, what := range d.Deferred(name, h.Options) {
				out = append(out, "handlers."+name+"."+what)
			}
		}
	}
	return out
}

func driverNamed(drivers []Driver, name string) (Driver, bool) {
	for _, d := range drivers {
		if d.Name == name {
			return d, true
		}
	}
	return Driver{}, false
}

func driverNames(drivers []Driver) []string {
	var out []string
	for _, d := range drivers {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

// HandlerNames returns the configured handler names, sorted.
func (c *Config) HandlerNames() []string {
	names := make([]string, 0, len(c.Handlers))
	for n := range c.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Reloadable are the keys a reload can change; every other key needs a
// restart (the socket, the directories, the daemons crimux talks to, the
// servers it listens with).
var Reloadable = []string{"handlers", "default_handler", "log_level"}

// Unreloadable lists, by key, what next changes that only a restart can:
// a reload that changes any of it is refused whole.
func (c *Config) Unreloadable(next *Config) []error {
	var errs []error
	diff("", reflect.ValueOf(*c), reflect.ValueOf(*next), &errs)
	return errs
}

func diff(prefix string, a, b reflect.Value, errs *[]error) {
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		if slices.Contains(Reloadable, key) {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			diff(key+".", fa, fb, errs)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*errs = append(*errs, fmt.Errorf("%s: can't change without a restart of crimux (running with %v, the configuration now says %v); only %s change at a reload",
				key, fa.Interface(), fb.Interface(), strings.Join(Reloadable, ", ")))
		}
	}
}

// DecodeOptions decodes a handler's driver options into out (a struct with
// mapstructure tags) for the driver named driver: strings convert to the
// field's type, "a,b" to a list; a key out has no field for is an error
// naming it and the keys the driver has (keys), in unknown; err is set when
// raw can't be decoded at all. Drivers check the values.
func DecodeOptions(driver string, raw map[string]any, out any, keys []string) (unknown []error, err error) {
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		Metadata:         &md,
		WeaklyTypedInput: true,
		DecodeHook:       mapstructure.StringToSliceHookFunc(","),
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(raw); err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), "decoding failed due to the following error(s):\n\n", ""))
	}
	sort.Strings(md.Unused)
	for _, k := range md.Unused {
		unknown = append(unknown, fmt.Errorf("%s: unknown key (a %s handler's keys: %s)", k, driver, strings.Join(keys, ", ")))
	}
	return unknown, nil
}
