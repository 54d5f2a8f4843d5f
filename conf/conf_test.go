package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, file string, env []string, args ...string) (*Config, error) {
	t.Helper()
	fs := Flags()
	if file != "" {
		args = append(args, "--config", file)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, env, fakeDriver())
}

const okBinary = "true"

// fakeDriver stands for a driver cmd/crimux registers: it knows a few keys,
// refuses others by name, fills in a default, offers a runc handler.
func fakeDriver() Driver {
	known := map[string]bool{"runtime_path": true, "runtime_type": true, "pod_annotations": true, "runsc_config": true}
	return Driver{
		Name: "fake",
		Check: func(_ string, opts map[string]any) (map[string]any, []error) {
			var errs []error
			out := map[string]any{"runtime_type": "io.fake"}
			for k, v := range opts {
				if !known[k] {
					errs = append(errs, fmt.Errorf("%s: unknown key", k))
				}
				out[k] = v
			}
			return out, errs
		},
		Deferred: func(string, map[string]any) []string { return []string{"runtime_path: exists"} },
		Defaults: func() map[string]Handler {
			return map[string]Handler{"runc": {Driver: "fake", Options: map[string]any{"runtime_path": "runc"}}}
		},
	}
}

func TestLoad(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	for _, tc := range []struct {
		desc    string
		name    string
		body    string
		env     []string
		args    []string
		wantErr string
		check   func(*testing.T, *Config)
	}{
		{
			desc: "built-in defaults with no file",
			check: func(t *testing.T, c *Config) {
				if c.Socket != "/run/crimux/crimux.sock" || c.Containerd.Namespace != "crimux" || c.DefaultHandler != "runc" {
					t.Errorf("unexpected defaults: %+v", c)
				}
				if _, ok := c.Handlers["runc"]; !ok {
					t.Errorf("no runc handler: %+v", c.Handlers)
				}
			},
		},
		{
			desc: "toml file, env and flag precedence",
			name: "c.toml",
			body: "socket = \"/tmp/file.sock\"\nlog_level = \"debug\"\n[containerd]\nnamespace = \"fromfile\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n",
			env:  []string{"CRIMUX_CONTAINERD_NAMESPACE=fromenv", "CRIMUX_CNI_BIN_DIRS=/a,/b", "PATH=" + os.Getenv("PATH")},
			args: []string{"--socket", "/tmp/flag.sock"},
			check: func(t *testing.T, c *Config) {
				if c.Socket != "/tmp/flag.sock" {
					t.Errorf("flag did not win: %s", c.Socket)
				}
				if c.Containerd.Namespace != "fromenv" {
					t.Errorf("env did not win: %s", c.Containerd.Namespace)
				}
				if c.LogLevel != "debug" {
					t.Errorf("file ignored: %s", c.LogLevel)
				}
				if strings.Join(c.CNI.BinDirs, ":") != "/a:/b" {
					t.Errorf("list from env: %v", c.CNI.BinDirs)
				}
				if h := c.Handlers["runc"]; h.Driver != "fake" || h.Options["runtime_type"] != "io.fake" {
					t.Errorf("the driver's defaults not applied: %+v", h)
				}
			},
		},
		{
			desc: "yaml file",
			name: "c.yaml",
			body: "default_handler: fast\nhandlers:\n  fast:\n    runtime_path: \"" + okBinary + "\"\n",
			check: func(t *testing.T, c *Config) {
				if c.DefaultHandler != "fast" || c.Handlers["fast"].Options["runtime_path"] != okBinary {
					t.Errorf("yaml not applied: %+v", c)
				}
			},
		},
		{desc: "unknown top-level key", name: "c.toml", body: "sockett = \"/x\"\n", wantErr: "sockett"},
		{desc: "unknown handler key", name: "c.toml", body: "[handlers.runc]\nruntime_pth = \"runc\"\n", wantErr: "handlers.runc.runtime_pth: unknown key"},
		{desc: "handler name not a DNS label", name: "c.toml", body: "default_handler = \"a_b\"\n[handlers.a_b]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "handlers.a_b: handler name \"a_b\" is not a DNS label"},
		{desc: "default handler not configured", name: "c.toml", body: "default_handler = \"kata\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "default_handler: \"kata\" is not a configured handler (configured: runc)"},
		{desc: "unknown driver", name: "c.toml", body: "[handlers.runc]\ndriver = \"docker\"\nruntime_path = \"" + okBinary + "\"\n", wantErr: "handlers.runc.driver: unknown driver \"docker\""},
		{desc: "k8s.io namespace refused", name: "c.toml", body: "[containerd]\nnamespace = \"k8s.io\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "containerd.namespace"},
		{desc: "bad log level", name: "c.toml", body: "log_level = \"loud\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "log_level: \"loud\""},
		{desc: "relative socket", args: []string{"--socket", "x.sock"}, wantErr: "socket: \"x.sock\" is not an absolute path"},
		{desc: "unknown env variable", env: []string{"CRIMUX_SOKET=/x"}, wantErr: "CRIMUX_SOKET"},
		{desc: "malformed toml", name: "c.toml", body: "socket = \n", wantErr: "read config file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			file := ""
			if tc.name != "" {
				file = writeFile(t, tc.name, tc.body)
			}
			c, err := load(t, file, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := load(t, "/nonexistent/crimux.toml", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/crimux.toml") {
		t.Fatalf("error = %v", err)
	}
}

func TestTOMLRoundTrip(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	body := "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\npod_annotations = [\"io.x/\"]\n[handlers.other]\nruntime_type = \"io.containerd.runsc.v1\"\nruntime_path = \"" + okBinary + "\"\ncni_conf_dir = \"/etc/cni/other\"\n[handlers.other.runsc_config]\nplatform = \"systrap\"\n"
	c, err := load(t, writeFile(t, "c.toml", body), nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := load(t, writeFile(t, "again.toml", c.TOML()), nil)
	if err != nil {
		t.Fatalf("reload of dumped config: %v\n%s", err, c.TOML())
	}
	if again.TOML() != c.TOML() {
		t.Fatalf("round trip differs:\n%s\n---\n%s", c.TOML(), again.TOML())
	}
}

func TestStreamingAddress(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	cert := writeFile(t, "cert.pem", "x")
	for _, tc := range []struct {
		desc, body, wantErr string
	}{
		{desc: "loopback v4", body: "address = \"127.0.0.1:0\""},
		{desc: "loopback v6", body: "address = \"[::1]:10010\""},
		{desc: "localhost", body: "address = \"localhost:0\""},
		{desc: "all addresses in plain text", body: "address = \":10010\"", wantErr: "streaming.address: \":10010\" is not a loopback address"},
		{desc: "node address in plain text", body: "address = \"10.0.0.5:10010\"", wantErr: "streaming.allow_insecure_remote"},
		{desc: "node address allowed", body: "address = \"10.0.0.5:10010\"\nallow_insecure_remote = true"},
		{desc: "node address with TLS", body: "address = \"10.0.0.5:10010\"\ntls_cert_file = \"" + cert + "\"\ntls_key_file = \"" + cert + "\""},
		{desc: "cert without key", body: "tls_cert_file = \"" + cert + "\"", wantErr: "give both or neither"},
		{desc: "missing cert", body: "tls_cert_file = \"/no/cert\"\ntls_key_file = \"/no/key\"", wantErr: "streaming.tls_cert_file: stat /no/cert"},
		{desc: "not host:port", body: "address = \"127.0.0.1\"", wantErr: "streaming.address: \"127.0.0.1\" is not host:port"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			body := "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n[streaming]\n" + tc.body + "\n"
			_, err := load(t, writeFile(t, "c.toml", body), nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// What only a running driver can check is listed, handler by handler.
func TestDeferred(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	c, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Deferred(fakeDriver()); len(got) != 1 || got[0] != "handlers.runc.runtime_path: exists" {
		t.Fatalf("deferred checks %q", got)
	}
}

// A reload may change the handlers, the default handler and the log level;
// anything else is refused with its key.
func TestUnreloadable(t *testing.T) {
	a := &Config{Socket: "/run/a.sock", RootDir: "/var/lib/a", LogLevel: "info", DefaultHandler: "runc",
		Handlers: map[string]Handler{"runc": {Driver: "containerd"}}}
	b := *a
	b.LogLevel, b.DefaultHandler = "debug", "gvisor"
	b.Handlers = map[string]Handler{"gvisor": {Driver: "containerd"}}
	if errs := a.Unreloadable(&b); len(errs) != 0 {
		t.Errorf("handlers, default_handler and log_level are reloadable: %v", errs)
	}
	b.Socket, b.StateDir = "/run/b.sock", "/run/b"
	b.Containerd.Namespace = "other"
	errs := a.Unreloadable(&b)
	var keys []string
	for _, err := range errs {
		keys = append(keys, strings.SplitN(err.Error(), ":", 2)[0])
	}
	if strings.Join(keys, " ") != "socket state_dir containerd.namespace" {
		t.Errorf("refused keys %v (%v), want socket state_dir containerd.namespace", keys, errs)
	}
	if len(errs) > 0 && !strings.Contains(errs[0].Error(), "can't change without a restart") {
		t.Errorf("message: %v", errs[0])
	}
}
