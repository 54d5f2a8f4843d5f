package containerd

import (
	"context"
	"fmt"
	"io"
	"sync"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// Runtime is one handler of the containerd driver. What differs between
// kinds of handler (runc, runsc, any other shim) is its kind; everything
// else is the same code for all.
type Runtime struct {
	d    *Driver
	name string
	opts HandlerOptions
	kind handlerKind
	// configured is false for a handler the configuration no longer has.
	configured bool

	featuresOnce sync.Once
	features     *runtime.RuntimeHandlerFeatures // guarded by featuresOnce
}

var (
	_ backends.Runtime        = (*Runtime)(nil)
	_ backends.Recoverer      = (*Runtime)(nil)
	_ backends.PortForwarder  = (*Runtime)(nil)
	_ backends.SandboxResizer = (*Runtime)(nil)
	_ backends.Metrics        = (*Runtime)(nil)
)

// Handler implements backends.Runtime.
func (r *Runtime) Handler() string { return r.name }

func (r *Runtime) usable() error {
	if !r.configured {
		return fmt.Errorf("%w: handler %q is no longer configured; its pods can only be stopped and removed", backends.ErrPrecondition, r.name)
	}
	return nil
}

// Features implements backends.Runtime: what the OCI runtime says of itself
// (probed once), as the handler's kind reads it.
func (r *Runtime) Features() *runtime.RuntimeHandlerFeatures {
	r.featuresOnce.Do(func() {
		r.features = r.kind.features(r.d.probeFeatures(r.opts))
	})
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: r.features.RecursiveReadOnlyMounts, UserNamespaces: r.features.UserNamespaces}
}

// PortForward implements backends.PortForwarder: the kind's own way when
// it has one (gVisor's netstack); otherwise ErrDefault, and the router dials
// the port in the pod's network namespace.
func (r *Runtime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	if pf, ok := r.kind.(portForwarder); ok {
		return pf.portForward(ctx, sandboxID, port, stream)
	}
	return backends.ErrDefault
}

// UpdateSandboxResources implements backends.SandboxResizer: where the
// sandbox itself carries the pod's resources (a gVisor sandbox's cgroup),
// they are applied to its pause task; elsewhere the pod cgroup the kubelet
// resized is all there is.
func (r *Runtime) UpdateSandboxResources(ctx context.Context, id string, pod *runtime.LinuxPodSandboxConfig) error {
	if !r.kind.policy().podLimitsOnSandbox {
		return nil
	}
	res := podResources(pod)
	if res == nil {
		return nil
	}
	return r.updateResources(ctx, id, res)
}
