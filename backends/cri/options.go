// Package cri is the forwarding driver: it serves a handler by forwarding
// its pods, containers and images to another CRI runtime's socket (CRI-O,
// containerd's own CRI, cri-dockerd, a runtime under test). The remote owns
// the pods' network, their images and the streaming of Exec, Attach and
// PortForward; crimux keeps its own records and IDs, so every later call
// reaches the remote that made a pod, also after a restart.
package cri

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crimux/crimux/conf"
)

// DriverName is the forwarding driver's name in [handlers.*] driver.
const DriverName = "cri"

// DefaultTimeout bounds each remote call when a handler sets no timeout.
const DefaultTimeout = 2 * time.Minute

// HandlerOptions are a forwarded handler's own keys.
type HandlerOptions struct {
	// Endpoint is the remote's CRI socket: unix:///path or /path.
	Endpoint string `mapstructure:"endpoint"`
	// RemoteHandler is the runtime handler the remote is asked for; "" = its default.
	RemoteHandler string `mapstructure:"remote_handler"`
	// Timeout bounds every call to the remote (an ExecSync or a stop gets its
	// own timeout on top).
	Timeout string `mapstructure:"timeout"`
}

// socket is the endpoint's socket path.
func (o HandlerOptions) socket() string {
	return strings.TrimPrefix(o.Endpoint, "unix://")
}

// timeout is the parsed Timeout (checked by DecodeOptions).
func (o HandlerOptions) timeout() time.Duration {
	d, err := time.ParseDuration(o.Timeout)
	if err != nil || d <= 0 {
		return DefaultTimeout
	}
	return d
}

// DecodeOptions decodes and checks a handler's options without touching the
// machine, and fills in the defaults. Each error names its key.
func DecodeOptions(raw map[string]any) (HandlerOptions, []error) {
	var o HandlerOptions
	errs, err := conf.DecodeOptions(DriverName, raw, &o, []string{"endpoint", "remote_handler", "timeout"})
	if err != nil {
		return o, []error{err}
	}
	switch p := o.socket(); {
	case o.Endpoint == "":
		errs = append(errs, errors.New("endpoint: required (the remote CRI runtime's socket, unix:///path)"))
	case strings.Contains(o.Endpoint, "://") && !strings.HasPrefix(o.Endpoint, "unix://"):
		errs = append(errs, fmt.Errorf("endpoint: %q: only unix sockets (unix:///path) are supported", o.Endpoint))
	case !strings.HasPrefix(p, "/"):
		errs = append(errs, fmt.Errorf("endpoint: %q is not an absolute socket path (unix:///path)", o.Endpoint))
	}
	if o.RemoteHandler != "" && !conf.IsDNSLabel(o.RemoteHandler) {
		errs = append(errs, fmt.Errorf("remote_handler: %q is not a DNS label (RuntimeClass handler names are)", o.RemoteHandler))
	}
	if o.Timeout == "" {
		o.Timeout = DefaultTimeout.String()
	} else if d, err := time.ParseDuration(o.Timeout); err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %q is not a positive duration", o.Timeout))
	}
	return o, errs
}

func encodeOptions(o HandlerOptions) map[string]any {
	return map[string]any{"endpoint": o.Endpoint, "remote_handler": o.RemoteHandler, "timeout": o.Timeout}
}

// ConfDriver is what the configuration knows of the forwarding driver.
func ConfDriver() conf.Driver {
	return conf.Driver{
		Name: DriverName,
		Check: func(_ string, raw map[string]any) (map[string]any, []error) {
			o, errs := DecodeOptions(raw)
			return encodeOptions(o), errs
		},
		Deferred: func(_ string, raw map[string]any) []string {
			o, _ := DecodeOptions(raw)
			return []string{fmt.Sprintf("endpoint: a CRI runtime answers on %s (not a start condition: crimux logs it at start and Status reports it as <handler>/RuntimeReady)", o.Endpoint)}
		},
	}
}
