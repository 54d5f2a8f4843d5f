package containerd

import (
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/crimux/crimux/conf"
)

// DriverName is the containerd driver's name in [handlers.*] driver.
const DriverName = "containerd"

// Runtime types the driver has a handler kind for; any other shim type runs
// with no options of crimux's (a shimKind).
const (
	RuntimeRunc  = "io.containerd.runc.v2"
	RuntimeRunsc = "io.containerd.runsc.v1"
	// RunscShim is the binary containerd runs for RuntimeRunsc; it must be on containerd's PATH.
	RunscShim = "containerd-shim-runsc-v1"
)

// DefaultMemoryLimitCheck is a runsc handler's memory_limit_check when unset.
const DefaultMemoryLimitCheck = time.Second

// HandlerOptions are a containerd handler's own keys ([handlers.<name>]
// besides driver and cni_conf_dir).
type HandlerOptions struct {
	// RuntimeType is the containerd shim, e.g. io.containerd.runc.v2.
	RuntimeType string `mapstructure:"runtime_type"`
	// RuntimePath is the OCI runtime binary (name in PATH or absolute path).
	RuntimePath string `mapstructure:"runtime_path"`
	// RuntimeRoot is the OCI runtime's state root; empty = the shim's default.
	RuntimeRoot string `mapstructure:"runtime_root"`
	// SystemdCgroup makes runc use the systemd cgroup driver.
	SystemdCgroup bool `mapstructure:"systemd_cgroup"`
	// Snapshotter unpacks images for this handler's containers.
	Snapshotter string `mapstructure:"snapshotter"`
	// PodAnnotations are pod annotation prefixes passed into the pause container's spec.
	PodAnnotations []string `mapstructure:"pod_annotations"`
	// ContainerAnnotations are container annotation prefixes passed into the spec.
	ContainerAnnotations []string `mapstructure:"container_annotations"`
	// RunscConfig are runsc flags (without "--") for runtime_type
	// io.containerd.runsc.v1, e.g. platform = "systrap", net-raw = "true".
	RunscConfig map[string]string `mapstructure:"runsc_config"`
	// ShimLogLevel is the gVisor shim's log level (debug, info, warning); "" = its default.
	ShimLogLevel string `mapstructure:"shim_log_level"`
	// MemoryLimitCheck is how often crimux samples the memory use of each
	// container of a gVisor sandbox that has a memory limit of its own, and
	// OOM-kills one that is over it: gVisor's sentry enforces no per-container
	// limit. "" = DefaultMemoryLimitCheck; "0s" = off. Only for runsc handlers.
	MemoryLimitCheck string `mapstructure:"memory_limit_check"`
}

// MemoryCheckInterval is the parsed memory_limit_check of a runsc handler
// (checked by DecodeOptions): 0 means crimux does not enforce container limits.
func (o HandlerOptions) MemoryCheckInterval() time.Duration {
	if o.RuntimeType != RuntimeRunsc {
		return 0
	}
	if o.MemoryLimitCheck == "" {
		return DefaultMemoryLimitCheck
	}
	d, err := time.ParseDuration(o.MemoryLimitCheck)
	if err != nil || d < 0 {
		return DefaultMemoryLimitCheck
	}
	return d
}

// DecodeOptions decodes and checks a handler's options without touching the
// machine, and fills in the defaults. Each error names its key.
func DecodeOptions(raw map[string]any) (HandlerOptions, []error) {
	var o HandlerOptions
	errs, err := conf.DecodeOptions(DriverName, raw, &o, optionKeys())
	if err != nil {
		return o, []error{err}
	}
	o = o.withDefaults()
	switch o.RuntimeType {
	case RuntimeRunsc:
		if o.MemoryLimitCheck != "" {
			if d, err := time.ParseDuration(o.MemoryLimitCheck); err != nil || d < 0 || (d > 0 && d < 100*time.Millisecond) {
				errs = append(errs, fmt.Errorf("memory_limit_check: %q is not \"0s\" (off) or a duration of at least 100ms", o.MemoryLimitCheck))
			}
		}
	default:
		if len(o.RunscConfig) > 0 {
			errs = append(errs, fmt.Errorf("runsc_config: only for runtime_type %s", RuntimeRunsc))
		}
		if o.MemoryLimitCheck != "" {
			errs = append(errs, fmt.Errorf("memory_limit_check: only for runtime_type %s (the kernel enforces %s containers' limits)", RuntimeRunsc, o.RuntimeType))
		}
		if o.ShimLogLevel != "" {
			errs = append(errs, fmt.Errorf("shim_log_level: only for runtime_type %s", RuntimeRunsc))
		}
	}
	if o.RuntimeType != RuntimeRunc && o.SystemdCgroup {
		errs = append(errs, fmt.Errorf("systemd_cgroup: only for runtime_type %s", RuntimeRunc))
	}
	return o, errs
}

func optionKeys() []string {
	var out []string
	for k := range encodeOptions(HandlerOptions{}) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (o HandlerOptions) withDefaults() HandlerOptions {
	if o.RuntimeType == "" {
		o.RuntimeType = RuntimeRunc
	}
	if o.RuntimePath == "" && o.RuntimeType == RuntimeRunc {
		o.RuntimePath = "runc"
	}
	if o.RuntimePath == "" && o.RuntimeType == RuntimeRunsc {
		o.RuntimePath = "runsc"
	}
	if o.Snapshotter == "" {
		o.Snapshotter = "overlayfs"
	}
	return o
}

// encodeOptions is the options as a handler table holds them (what
// `crimux config check` prints, and DecodeOptions reads back).
func encodeOptions(o HandlerOptions) map[string]any {
	m := map[string]any{
		"runtime_type":          o.RuntimeType,
		"runtime_path":          o.RuntimePath,
		"runtime_root":          o.RuntimeRoot,
		"systemd_cgroup":        o.SystemdCgroup,
		"snapshotter":           o.Snapshotter,
		"pod_annotations":       append([]string{}, o.PodAnnotations...),
		"container_annotations": append([]string{}, o.ContainerAnnotations...),
		"shim_log_level":        o.ShimLogLevel,
		"memory_limit_check":    o.MemoryLimitCheck,
	}
	if len(o.RunscConfig) > 0 {
		rc := map[string]any{}
		for k, v := range o.RunscConfig {
			rc[k] = v
		}
		m["runsc_config"] = rc
	}
	return m
}

// probe makes the checks only a running driver can: the runtime binary
// exists (and runsc runs), and gVisor's shim is on containerd's PATH.
// Errors name their key below the handler.
func (o HandlerOptions) probe() []error {
	var errs []error
	if o.RuntimePath != "" {
		if p, err := exec.LookPath(o.RuntimePath); err != nil {
			errs = append(errs, fmt.Errorf("runtime_path: runtime binary %q not found: %v", o.RuntimePath, errors.Unwrap(err)))
		} else if o.RuntimeType == RuntimeRunsc {
			if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("runtime_path: runsc at %q is unusable: %s --version: %v: %s", p, p, err, strings.TrimSpace(string(out))))
			}
		}
	}
	if o.RuntimeType == RuntimeRunsc {
		if _, err := exec.LookPath(RunscShim); err != nil {
			errs = append(errs, fmt.Errorf("runtime_type: %s needs %s on containerd's PATH: not found", RuntimeRunsc, RunscShim))
		}
	}
	return errs
}

// deferred says which checks probe makes when the driver starts.
func (o HandlerOptions) deferred() []string {
	var out []string
	if o.RuntimePath != "" {
		what := "exists"
		if o.RuntimeType == RuntimeRunsc {
			what = "exists and `--version` runs"
		}
		out = append(out, fmt.Sprintf("runtime_path: %q %s", o.RuntimePath, what))
	}
	if o.RuntimeType == RuntimeRunsc {
		out = append(out, "runtime_type: "+RunscShim+" is on containerd's PATH")
	}
	out = append(out, fmt.Sprintf("snapshotter: containerd has %q", o.Snapshotter))
	return out
}

// ConfDriver is the containerd driver as the configuration loader knows it.
func ConfDriver() conf.Driver {
	return conf.Driver{
		Name: DriverName,
		Check: func(_ string, raw map[string]any) (map[string]any, []error) {
			o, errs := DecodeOptions(raw)
			return encodeOptions(o), errs
		},
		Deferred: func(_ string, raw map[string]any) []string {
			o, _ := DecodeOptions(raw)
			return o.deferred()
		},
		Defaults: DefaultHandlers,
	}
}

// DefaultHandlers is the handler table used when the configuration names
// none: runc always, and gvisor when runsc and its containerd shim are
// installed.
func DefaultHandlers() map[string]conf.Handler {
	hs := map[string]conf.Handler{"runc": {Driver: DriverName, Options: encodeOptions(DefaultRuncHandler())}}
	_, errRunsc := exec.LookPath("runsc")
	_, errShim := exec.LookPath(RunscShim)
	if errRunsc == nil && errShim == nil {
		hs["gvisor"] = conf.Handler{Driver: DriverName, Options: encodeOptions(DefaultGvisorHandler())}
	}
	return hs
}

// DefaultGvisorHandler is the built-in gvisor handler: gVisor's shim with runsc
// on the systrap platform, raw sockets allowed (as runc allows CAP_NET_RAW),
// and the pod's OCI seccomp profile enforced inside the sandbox too.
func DefaultGvisorHandler() HandlerOptions {
	return HandlerOptions{
		RuntimeType:      RuntimeRunsc,
		RuntimePath:      "runsc",
		Snapshotter:      "overlayfs",
		RunscConfig:      map[string]string{"platform": "systrap", "net-raw": "true", "oci-seccomp": "true"},
		MemoryLimitCheck: DefaultMemoryLimitCheck.String(),
	}
}

// DefaultRuncHandler is the built-in runc handler.
func DefaultRuncHandler() HandlerOptions {
	return HandlerOptions{RuntimeType: RuntimeRunc, RuntimePath: "runc", Snapshotter: "overlayfs"}
}
