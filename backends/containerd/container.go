package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fault"
	"github.com/moby/sys/signal"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// CreateContainer implements backends.Runtime.
func (r *Runtime) CreateContainer(ctx context.Context, c backends.Container) (backends.User, error) {
	if err := r.usable(); err != nil {
		return backends.User{}, err
	}
	if err := r.kind.checkContainer(c); err != nil {
		return backends.User{}, err
	}
	ctx = r.d.ctx(ctx)
	img, info, err := r.resolveImage(ctx, c.Image)
	if err != nil {
		return backends.User{}, err
	}
	in, err := r.containerInput(ctx, c, info.config.Config)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, err
	}
	fault.Point("create-container/after-volumes")
	specOpts, err := containerSpec(in)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, err
	}
	spec, err := r.newContainer(ctx, c, img, info, specOpts)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, err
	}
	return userOf(spec.Process.User), nil
}

// containerInput gathers what a container's spec is made from; what needs
// the host is done here, not in the spec builder: the pause process's pid,
// the AppArmor profile (the default one loaded), the pod's files, host
// paths resolved (and made when missing, as containerd's CRI does) and the
// image volumes mounted.
func (r *Runtime) containerInput(ctx context.Context, c backends.Container, ic ocispec.ImageConfig) (containerSpecInput, error) {
	in := containerSpecInput{ID: c.ID, Sandbox: c.Sandbox, Config: c.Config, Image: ic, ImageName: c.Image,
		Policy: r.kind.policy(), Node: r.d.node(), ContainerAnnotations: r.opts.ContainerAnnotations, Handler: r.name}
	var err error
	if in.PausePid, err = r.pausePid(ctx, c.Sandbox.ID); err != nil {
		return in, err
	}
	if nsOptions(c.Sandbox).Ipc != runtime.NamespaceMode_NODE {
		in.ShmDir = r.d.shmDir(c.Sandbox.ID)
	}
	if in.Hostname, err = podHostname(c.Sandbox); err != nil {
		return in, err
	}
	sc := c.Config.GetLinux().GetSecurityContext()
	if err := checkSELinux("linux.security_context.selinux_options", sc.GetSelinuxOptions(), r.d.lsm); err != nil {
		return in, err
	}
	if in.AppArmor, err = appArmorProfile(sc, sc.GetPrivileged(), r.d.lsm); err != nil {
		return in, err
	}
	if in.AppArmor == defaultAppArmorProfile {
		if err := r.d.loadDefaultAppArmor(); err != nil {
			return in, err
		}
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		if _, err := os.Stat(filepath.Join(c.Sandbox.Dir, f)); err == nil {
			in.EtcFiles = append(in.EtcFiles, f)
		}
	}
	if in.HostPaths, err = resolveHostPaths(c.Config.Mounts); err != nil {
		return in, err
	}
	if in.Policy.memoryEmptyDirs && len(in.HostPaths) > 0 {
		uid := c.Sandbox.Config.GetMetadata().GetUid()
		in.MemoryVolumes = memoryEmptyDirs(kubeletPodsDir, uid)
		if err := checkSubPaths(kubeletPodsDir, uid, in.MemoryVolumes, in.HostPaths); err != nil {
			return in, err
		}
	}
	for _, m := range c.Config.Mounts {
		if m.RecursiveReadOnly {
			in.RRO = r.Features().RecursiveReadOnlyMounts
		}
	}
	in.ImageVols, err = r.imageVolumes(ctx, c)
	return in, err
}

// podHostname is the pod's hostname, or the node's when it names none.
func podHostname(sb backends.Sandbox) (string, error) {
	if h := sb.Config.GetHostname(); h != "" {
		return h, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read the node's hostname: %w", err)
	}
	return h, nil
}

// resolveHostPaths resolves each host-path mount once (symlinks followed)
// and makes a missing one a directory, as containerd's CRI does; the
// runtime then mounts the resolved path. By mount index.
func resolveHostPaths(mounts []*runtime.Mount) (map[int]string, error) {
	out := map[int]string{}
	for i, m := range mounts {
		if m.Image != nil && m.Image.Image != "" || m.HostPath == "" {
			continue
		}
		if _, err := os.Stat(m.HostPath); os.IsNotExist(err) {
			if err := os.MkdirAll(m.HostPath, 0o755); err != nil {
				return nil, fmt.Errorf("create mount source %q: %w", m.HostPath, err)
			}
		}
		resolved, err := filepath.EvalSymlinks(m.HostPath)
		if err != nil {
			return nil, fmt.Errorf("%w: mount %s: host path %q: %v", backends.ErrInvalid, m.ContainerPath, m.HostPath, err)
		}
		out[i] = resolved
	}
	return out, nil
}

// newContainer creates the containerd container with its labels (what
// crimux needs to find it again after a restart) and a new snapshot.
func (r *Runtime) newContainer(ctx context.Context, c backends.Container, img client.Image, info imageInfo, specOpts []oci.SpecOpts) (*oci.Spec, error) {
	rtOpts, err := r.kind.shimOptions()
	if err != nil {
		return nil, err
	}
	stdin := ""
	if c.Config.Stdin {
		stdin = "open"
		if c.Config.StdinOnce {
			stdin = "once"
		}
	}
	labels := map[string]string{
		labelKind:     kindContainer,
		labelHandler:  r.name,
		labelInstance: r.d.opts.Instance,
		labelSandbox:  c.Sandbox.ID,
		labelLogDir:   c.LogDir,
		labelLogPath:  c.LogPath,
		labelStdin:    stdin,
		labelTTY:      fmt.Sprint(c.Config.Tty),
		labelStopSig:  info.config.Config.StopSignal,
	}
	m, spec, err := r.newContainerFromImage(ctx, c.ID, img, info, snapshotOpts(c.Sandbox), specOpts, c.Commit,
		client.WithRuntime(r.opts.RuntimeType, rtOpts),
		client.WithContainerLabels(labels),
		// Its task joins the pause container's shim directly (podgroup.go).
		client.WithSandbox(c.Sandbox.ID),
	)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", mapErr(err))
	}
	r.d.keepMade(c.ID, m)
	return spec, nil
}

// userOf is the identity a spec's process runs with, groups once each.
func userOf(su specs.User) backends.User {
	u := backends.User{UID: int64(su.UID), GID: int64(su.GID)}
	seen := map[int64]bool{}
	for _, g := range su.AdditionalGids {
		if !seen[int64(g)] {
			seen[int64(g)] = true
			u.Groups = append(u.Groups, int64(g))
		}
	}
	return u
}

// cleanupCreate undoes what a failed CreateContainer made.
func (r *Runtime) cleanupCreate(id string) {
	ctx, cancel := r.d.cleanupCtx()
	defer cancel()
	if err := r.removeImageVolumes(ctx, id); err != nil {
		r.d.log.Warn("roll back image volumes", "id", id, "error", err)
	}
}

// StartContainer implements backends.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, id string) (backends.TaskState, error) {
	if err := r.usable(); err != nil {
		return backends.TaskState{}, err
	}
	ctx = r.d.ctx(ctx)
	// A container this crimux made is started from what it kept of it;
	// any other is read from containerd first.
	var cont client.Container
	var rootfs []mount.Mount
	if m := r.d.takeMade(id); m != nil {
		cont, rootfs = m.cont, m.rootfs
	} else {
		var err error
		if cont, err = r.d.client.LoadContainer(ctx, id); err != nil {
			return backends.TaskState{}, mapErr(err)
		}
	}
	// Either way the container's record is at hand: no Get for its labels.
	info, err := cont.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	labels := info.Labels
	cio_, err := newContainerIO(logOf(labels), labels[labelStdin] != "", labels[labelStdin] == "once")
	if err != nil {
		return backends.TaskState{}, err
	}
	streams := cio_.streams(labels[labelTTY] == "true")
	p, err := r.d.startTask(ctx, cont, rootfs, id, streams.creator(filepath.Join(r.d.opts.StateDir, "io", id)), cio_, streams.attach())
	if err != nil {
		cio_.Close()
		return backends.TaskState{}, fmt.Errorf("start container: %w", err)
	}
	r.watchContainer(ctx, id, &info)
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: p.pid}, nil
}

// StopContainer implements backends.Runtime.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	sig := syscall.SIGTERM
	// One read of the container, its labels with it.
	if info, err := r.d.client.ContainerService().Get(r.d.ctx(ctx), id); err == nil && info.Labels[labelStopSig] != "" {
		if s, err := signal.ParseSignal(info.Labels[labelStopSig]); err == nil {
			sig = s
		}
	}
	return r.stop(ctx, id, sig, timeout)
}

// RemoveContainer implements backends.Runtime.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	// The usual case is a container whose exit was already handled: its
	// task is gone and there is nothing to stop or to look up for it.
	taskGone := r.d.proc(id) == nil && !r.d.hasTask(ctx, id)
	if !taskGone {
		if err := r.stop(ctx, id, syscall.SIGKILL, 0); err != nil {
			return err
		}
	}
	return r.deleteContainer(ctx, id, taskGone)
}

// deleteContainer deletes a container, its task (unless taskGone says it
// is known to be gone), its rootfs snapshot, image volumes and fifos.
func (r *Runtime) deleteContainer(ctx context.Context, id string, taskGone bool) error {
	r.d.takeMade(id) // made and never started
	ctx = r.d.ctx(ctx)
	// A container whose exit this crimux handled was made by it, with its
	// rootfs snapshot keyed by its ID in the handler's snapshotter: nothing
	// to look up first.
	info := containers.Container{ID: id, Snapshotter: r.opts.Snapshotter, SnapshotKey: id}
	if !r.d.sawExit(id) {
		// A container containerd never recorded (crimux's record was
		// written alongside, and a crash came between) may still have
		// its rootfs snapshot and image volumes: they go below all the same.
		cont, err := r.d.client.LoadContainer(ctx, id)
		switch {
		case isNotFound(err):
		case err != nil:
			return mapErr(err)
		default:
			if info, err = cont.Info(ctx, client.WithoutRefreshedMetadata); err != nil {
				return mapErr(err)
			}
			// A task that never started (or a failed one) may still exist.
			if !taskGone {
				if task, err := cont.Task(ctx, nil); err == nil {
					if err := r.d.deleteTask(ctx, task); err != nil && !isNotFound(err) {
						return fmt.Errorf("delete task of %s: %w", id, mapErr(err))
					}
				}
			}
		}
	}
	// The rootfs and the container go at once: neither needs the other
	// (a snapshot the container no longer references is only removed
	// sooner).
	snapErr := make(chan error, 1)
	go func() {
		if info.SnapshotKey == "" {
			snapErr <- nil
			return
		}
		err := r.d.client.SnapshotService(info.Snapshotter).Remove(ctx, info.SnapshotKey)
		if err != nil && !isNotFound(err) {
			err = fmt.Errorf("delete rootfs of container %s: %w", id, mapErr(err))
		} else {
			err = nil
		}
		snapErr <- err
	}()
	if err := r.d.client.ContainerService().Delete(ctx, id); err != nil && !isNotFound(err) {
		<-snapErr
		return fmt.Errorf("delete container %s: %w", id, mapErr(err))
	}
	if err := <-snapErr; err != nil {
		return err
	}
	r.d.forgetTaskGone(id)
	if err := r.removeImageVolumes(ctx, id); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(r.d.opts.StateDir, "io", id))
	return nil
}

// UpdateResources implements backends.Runtime; a kind that watches
// containers (gVisor's memory guard) takes the new limits at once.
func (r *Runtime) UpdateResources(ctx context.Context, id string, res *runtime.LinuxContainerResources) error {
	if err := r.updateResources(ctx, id, res); err != nil {
		return err
	}
	r.watchContainer(ctx, id, nil)
	return nil
}

// watchContainer tells a kind that follows running containers about one,
// with its containerd record when the caller holds that (nil: the kind
// reads it if it needs it).
func (r *Runtime) watchContainer(ctx context.Context, id string, rec *containers.Container) {
	if w, ok := r.kind.(containerWatcher); ok {
		w.watch(ctx, id, rec)
	}
}

// updateResources changes a task's resources and its stored spec.
func (r *Runtime) updateResources(ctx context.Context, id string, res *runtime.LinuxContainerResources) error {
	if res == nil {
		return nil
	}
	if err := checkUnified(res, r.d.cgroups); err != nil {
		return err
	}
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return mapErr(err)
	}
	spec, err := cont.Spec(ctx)
	if err != nil {
		return mapErr(err)
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	applyResources(spec.Linux.Resources, res, r.d.cgroups)
	if err := cont.Update(ctx, func(ctx context.Context, _ *client.Client, c *containersContainer) error {
		return setSpec(c, spec)
	}); err != nil {
		return fmt.Errorf("update spec of %s: %w", id, mapErr(err))
	}
	if p := r.d.proc(id); p != nil {
		if err := p.task.Update(ctx, client.WithResources(spec.Linux.Resources)); err != nil {
			return fmt.Errorf("update resources of %s: %w", id, mapErr(err))
		}
	}
	return nil
}
