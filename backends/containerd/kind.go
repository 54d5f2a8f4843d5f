package containerd

import (
	"context"
	"io"
	"os/exec"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/containers"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// handlerKind is what one kind of handler does its own way. A Runtime has
// one; it is asked at fixed points, so nothing the Runtime does can bypass
// it (a wrapper that embeds the Runtime could be bypassed by the Runtime's
// own methods calling each other).
type handlerKind interface {
	// shimOptions are the options containerd passes to the shim.
	shimOptions() (any, error)
	// features reads what the driver probed of the runtime.
	features(probed probedFeatures) *runtime.RuntimeHandlerFeatures
	// checkSandbox and checkContainer refuse what the kind can't do, by
	// design, with ErrUnsupported naming the reason.
	checkSandbox(sb backends.Sandbox) error
	checkContainer(c backends.Container) error
	// policy says how the spec builder treats this kind.
	policy() specPolicy
	// readsNetworkAtCreate: the runtime reads the pod's netns when the
	// sandbox's task is created (a netstack or a VM copies its interfaces),
	// so that must wait for CNI; runc only joins the netns.
	readsNetworkAtCreate() bool
	// cgroupPerContainer: each container's processes run in a cgroup of
	// their own on the node (runc), whose counters crimux can read itself;
	// a gVisor container's are the sandbox's, known only to its shim.
	cgroupPerContainer() bool
}

// containerWatcher is a kind that follows running containers (gVisor's
// memory guard): told when one started, was found running after a
// restart, or had its resources changed.
type containerWatcher interface {
	// watch is given the container's containerd record when the caller
	// holds it, nil to have it read if needed.
	watch(ctx context.Context, id string, rec *containers.Container)
}

// portForwarder is a kind with a port-forward of its own.
type portForwarder interface {
	portForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error
}

// specPolicy is what a kind changes in the specs crimux builds.
type specPolicy struct {
	// rroNative: every read-only bind mount is recursive already (gVisor),
	// so no "rro" option is passed.
	rroNative bool
	// podLimitsOnSandbox: the pod's resources (its containers' sum plus
	// overhead) go on the sandbox's own cgroup: a gVisor sandbox is one host
	// process tree that all the pod's memory is charged to, and the sentry
	// enforces no per-container limit.
	podLimitsOnSandbox bool
	// memoryEmptyDirs: a pod's memory-backed emptyDir volumes become one
	// tmpfs inside the sandbox, through gVisor's mount hints
	// (runsc_volumes.go).
	memoryEmptyDirs bool
}

// probedFeatures are what the OCI runtime and the snapshotter say they do.
type probedFeatures struct {
	rro, idmap, snapshotterRemaps bool
}

// newKind is the kind for a handler's runtime type.
func (d *Driver) newKind(name string, o HandlerOptions) (handlerKind, error) {
	switch o.RuntimeType {
	case RuntimeRunc:
		k := &runcKind{opts: o}
		if o.RuntimePath != "" {
			p, err := exec.LookPath(o.RuntimePath)
			if err != nil {
				return nil, err
			}
			k.bin = p
		}
		return k, nil
	case RuntimeRunsc:
		return newRunscKind(d, name, o)
	}
	return shimKind{}, nil
}

// runcKind is a handler of containerd's runc shim.
type runcKind struct {
	opts HandlerOptions
	bin  string // the runc binary, resolved
}

var _ handlerKind = (*runcKind)(nil)

func (k *runcKind) shimOptions() (any, error) {
	return &options.Options{BinaryName: k.bin, Root: k.opts.RuntimeRoot, SystemdCgroup: k.opts.SystemdCgroup}, nil
}

// features: recursive read-only mounts when runc lists the "rro" mount
// option; pod user namespaces when it does idmapped mounts and the
// snapshotter can id-map a rootfs.
func (k *runcKind) features(p probedFeatures) *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: p.rro, UserNamespaces: p.idmap && p.snapshotterRemaps}
}

func (k *runcKind) checkSandbox(backends.Sandbox) error     { return nil }
func (k *runcKind) checkContainer(backends.Container) error { return nil }
func (k *runcKind) policy() specPolicy                      { return specPolicy{} }
func (k *runcKind) readsNetworkAtCreate() bool              { return false }
func (k *runcKind) cgroupPerContainer() bool                { return true }

// shimKind is a handler of any other containerd shim: crimux passes it no
// options of its own and claims no features for it.
type shimKind struct{}

var _ handlerKind = shimKind{}

func (shimKind) shimOptions() (any, error) { return nil, nil }
func (shimKind) features(probedFeatures) *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{}
}
func (shimKind) checkSandbox(backends.Sandbox) error     { return nil }
func (shimKind) checkContainer(backends.Container) error { return nil }
func (shimKind) policy() specPolicy                      { return specPolicy{} }

// readsNetworkAtCreate: an unknown shim may (VM runtimes do).
func (shimKind) readsNetworkAtCreate() bool { return true }

// cgroupPerContainer: an unknown shim's processes may be a VM's.
func (shimKind) cgroupPerContainer() bool { return false }
