package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fault"
	"golang.org/x/sys/unix"
)

// RunSandbox implements backends.Runtime.
func (r *Runtime) RunSandbox(ctx context.Context, sb backends.Sandbox) (_ backends.TaskState, retErr error) {
	if err := r.usable(); err != nil {
		return backends.TaskState{}, err
	}
	if err := r.kind.checkSandbox(sb); err != nil {
		return backends.TaskState{}, err
	}
	ctx = r.d.ctx(ctx)
	img, info, err := r.resolveImage(ctx, sb.Image)
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("sandbox image: %w", err)
	}
	if err := checkSELinux("linux.security_context.selinux_options", sb.Config.GetLinux().GetSecurityContext().GetSelinuxOptions(), r.d.lsm); err != nil {
		return backends.TaskState{}, err
	}
	hostname, err := podHostname(sb)
	if err != nil {
		return backends.TaskState{}, err
	}
	in := sandboxSpecInput{Sandbox: sb, Image: info.config.Config, Hostname: hostname,
		Policy: r.kind.policy(), Node: r.d.node(), PodAnnotations: r.opts.PodAnnotations}
	if in.Policy.memoryEmptyDirs {
		in.MemoryVolumes = memoryEmptyDirs(kubeletPodsDir, sb.Config.GetMetadata().GetUid())
	}
	specOpts, err := sandboxSpec(in)
	if err != nil {
		return backends.TaskState{}, err
	}
	if nsOptions(sb).Ipc != runtime.NamespaceMode_NODE {
		if _, err := r.d.mountShm(sb.ID); err != nil {
			return backends.TaskState{}, err
		}
		defer func() {
			if retErr != nil {
				r.d.unmountShm(sb.ID)
			}
		}()
		// A crash here leaves the pod's shm mounted and no containerd
		// container to find it by: Sweep unmounts it from its dir.
		fault.Point("run-sandbox/after-shm")
	}
	rtOpts, err := r.kind.shimOptions()
	if err != nil {
		return backends.TaskState{}, err
	}
	labels := map[string]string{labelKind: kindSandbox, labelHandler: r.name, labelInstance: r.d.opts.Instance}
	// The pod's sandbox store record is only read when its containers'
	// tasks are made (podgroup.go): it is written while the pause
	// container is made, and both are there before the pause starts.
	grouped := make(chan error, 1)
	go func() { grouped <- r.createPodGroup(ctx, sb.ID) }()
	m, _, err := r.newContainerFromImage(ctx, sb.ID, img, info, snapshotOpts(sb), specOpts, nil,
		client.WithRuntime(r.opts.RuntimeType, rtOpts),
		client.WithContainerLabels(labels),
	)
	groupErr := <-grouped
	if groupErr == nil {
		defer func() {
			if retErr != nil {
				cctx, cancel := r.d.cleanupCtx()
				defer cancel()
				if err := r.d.deletePodGroup(cctx, sb.ID); err != nil {
					r.d.log.Warn("roll back pod's sandbox store record", "id", sb.ID, "error", err)
				}
			}
		}()
	}
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("create pause container: %w", mapErr(err))
	}
	cont := m.cont
	defer func() {
		if retErr != nil {
			cctx, cancel := r.d.cleanupCtx()
			defer cancel()
			if err := cont.Delete(cctx, client.WithSnapshotCleanup); err != nil && !isNotFound(err) {
				r.d.log.Warn("roll back pause container", "id", sb.ID, "error", err)
			}
		}
	}()
	if groupErr != nil {
		return backends.TaskState{}, groupErr
	}
	if sb.WaitNetwork != nil && r.kind.readsNetworkAtCreate() {
		if err := sb.WaitNetwork(ctx); err != nil {
			return backends.TaskState{}, err
		}
	}
	p, err := r.d.startTask(ctx, cont, m.rootfs, sb.ID, cio.NullIO, nil, nil)
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("start pause container with %s: %w", r.opts.RuntimeType, err)
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: p.pid}, nil
}

func (r *Runtime) ensureUnpacked(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
	if err != nil {
		return fmt.Errorf("image %q: %w", img.Name(), mapErr(err))
	}
	if !ok {
		ctx, done, err := r.d.withLease(ctx, "unpack")
		if err != nil {
			return err
		}
		defer done()
		if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
			return fmt.Errorf("unpack image %q with %s: %w", img.Name(), r.opts.Snapshotter, mapErr(err))
		}
	}
	return nil
}

func (d *Driver) shmDir(sandboxID string) string {
	return filepath.Join(d.opts.StateDir, "sandboxes", sandboxID, "shm")
}

func (d *Driver) mountShm(sandboxID string) (string, error) {
	dir := d.shmDir(sandboxID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create shm dir: %w", err)
	}
	if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return "", fmt.Errorf("mount sandbox shm at %q: %w", dir, err)
	}
	return dir, nil
}

func (d *Driver) unmountShm(sandboxID string) {
	dir := d.shmDir(sandboxID)
	for {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			break
		}
	}
	_ = os.RemoveAll(filepath.Dir(dir))
}

// StopSandbox implements backends.Runtime.
func (r *Runtime) StopSandbox(ctx context.Context, id string) error {
	return r.stop(ctx, id, syscall.SIGKILL, 0)
}

// RemoveSandbox implements backends.Runtime.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if err := r.stop(ctx, id, syscall.SIGKILL, 0); err != nil {
		return err
	}
	if err := r.deleteContainer(ctx, id, false); err != nil {
		return err
	}
	if err := r.d.deletePodGroup(ctx, id); err != nil {
		return err
	}
	r.d.unmountShm(id)
	return nil
}

// pausePid returns the pid of the sandbox's pause process.
func (r *Runtime) pausePid(ctx context.Context, sandboxID string) (uint32, error) {
	if p := r.d.proc(sandboxID); p != nil {
		return p.pid, nil
	}
	p, err := r.adopt(ctx, sandboxID)
	if err != nil {
		return 0, err
	}
	if p == nil {
		return 0, fmt.Errorf("%w: sandbox %s is not running", backends.ErrPrecondition, sandboxID)
	}
	return p.pid, nil
}
