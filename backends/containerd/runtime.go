package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/internal/fault"
)

// Runtime is one handler of the containerd driver.
type Runtime struct {
	d    *Driver
	name string
	h    conf.Handler
	// configured is false for a handler the configuration no longer has.
	configured bool
	// opts returns the runtime options containerd passes to the shim.
	opts func() (any, error)

	featuresOnce sync.Once
	rro          bool // guarded by featuresOnce
	userns       bool // guarded by featuresOnce
	// rroNative is set where every read-only bind mount is recursive
	// already (gVisor), so no "rro" option is passed.
	rroNative bool
	// podLimitsOnSandbox puts the pod's resources (its containers' sum plus
	// overhead) on the sandbox's own cgroup: a gVisor sandbox is one host
	// process tree that all the pod's memory is charged to, and the sentry
	// enforces no per-container limit.
	podLimitsOnSandbox bool
}

var _ backends.Runtime = (*Runtime)(nil)
var _ backends.Recoverer = (*Runtime)(nil)

// proc is a sandbox's or container's running task that crimux watches.
type proc struct {
	id   string
	task client.Task
	io   *containerIO // nil for sandboxes
	pid  uint32
	// done is closed once the exit was handled.
	done chan struct{}
}

// Handler implements backends.Runtime.
func (r *Runtime) Handler() string { return r.name }

// Features implements backends.Runtime, from what the OCI runtime says of
// itself (`runc features`): recursive read-only mounts when it lists the
// "rro" mount option; pod user namespaces when it does idmapped mounts and
// the handler's snapshotter can id-map a rootfs ("remap-ids").
func (r *Runtime) Features() *runtime.RuntimeHandlerFeatures {
	r.featuresOnce.Do(func() {
		rro, idmap := r.probeRunc()
		r.rro = r.rroNative || rro
		r.userns = idmap && r.snapshotterRemaps()
	})
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: r.rro, UserNamespaces: r.userns}
}

func (r *Runtime) probeRunc() (rro, idmap bool) {
	if r.h.RuntimeType != conf.RuntimeRunc || r.h.RuntimePath == "" {
		return false, false
	}
	out, err := exec.Command(r.h.RuntimePath, "features").Output()
	if err != nil {
		return false, false
	}
	var f struct {
		MountOptions []string `json:"mountOptions"`
		Linux        struct {
			MountExtensions struct {
				IDMap struct {
					Enabled *bool `json:"enabled"`
				} `json:"idmap"`
			} `json:"mountExtensions"`
		} `json:"linux"`
	}
	if json.Unmarshal(out, &f) != nil {
		return false, false
	}
	idmap = f.Linux.MountExtensions.IDMap.Enabled != nil && *f.Linux.MountExtensions.IDMap.Enabled
	return slices.Contains(f.MountOptions, "rro"), idmap
}

// snapshotterRemaps: the handler's snapshotter id-maps a rootfs itself.
func (r *Runtime) snapshotterRemaps() bool {
	ctx, cancel := context.WithTimeout(r.d.ctx(context.Background()), r.d.opts.Timeout)
	defer cancel()
	caps, err := r.d.client.GetSnapshotterCapabilities(ctx, r.h.Snapshotter)
	if err != nil {
		r.d.log.Warn("snapshotter capabilities", "handler", r.name, "snapshotter", r.h.Snapshotter, "error", err)
		return false
	}
	return slices.Contains(caps, "remap-ids")
}

func (r *Runtime) usable() error {
	if !r.configured {
		return fmt.Errorf("%w: handler %q is no longer configured; its pods can only be stopped and removed", backends.ErrPrecondition, r.name)
	}
	return nil
}

func (r *Runtime) runtimeOptions() (any, error) {
	if r.opts == nil {
		return r.runcOptions()
	}
	return r.opts()
}

func (r *Runtime) runcOptions() (any, error) {
	if r.h.RuntimeType != conf.RuntimeRunc {
		return nil, nil
	}
	bin := r.h.RuntimePath
	if bin != "" {
		p, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("handler %q: runtime binary %q: %w", r.name, bin, err)
		}
		bin = p
	}
	return &options.Options{BinaryName: bin, Root: r.h.RuntimeRoot, SystemdCgroup: r.h.SystemdCgroup}, nil
}

func (d *Driver) proc(id string) *proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.procs[id]
}

// watch handles the exit of p's task once ch reports it: it deletes the task
// (which drains the IO), closes the log and tells the listener.
func (d *Driver) watch(p *proc, ch <-chan client.ExitStatus) {
	d.mu.Lock()
	d.procs[p.id] = p
	d.mu.Unlock()
	go func() {
		st := <-ch
		code, at, err := st.Result()
		ts := backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: int32(code), ExitedAt: at}
		if err != nil {
			// Lost the wait (containerd restarted): ask again once it answers.
			ts = d.rewait(p)
			if ts.State == runtime.ContainerState_CONTAINER_UNKNOWN {
				return // the driver closed; the task is left to the next crimux
			}
		}
		ctx, cancel := d.cleanupCtx()
		// The exit is kept on the container before its task goes, so that
		// State (recovery after a crash) can still tell it from "never ran".
		if cont, err := d.client.LoadContainer(ctx, p.id); err == nil {
			exit := fmt.Sprintf("%d %s", ts.ExitCode, ts.ExitedAt.UTC().Format(time.RFC3339Nano))
			if _, err := cont.SetLabels(ctx, map[string]string{labelExit: exit}); err != nil && !isNotFound(err) {
				d.log.Warn("record the exit on the container", "id", p.id, "error", err)
			}
		}
		if _, err := p.task.Delete(ctx); err != nil && !isNotFound(err) {
			d.log.Warn("delete exited task", "id", p.id, "error", err)
		}
		cancel()
		if p.io != nil {
			p.io.Close()
		}
		if ts.ExitedAt.IsZero() {
			ts.ExitedAt = time.Now()
		}
		d.mu.Lock()
		if d.procs[p.id] == p {
			delete(d.procs, p.id)
		}
		d.mu.Unlock()
		// Tell the listener first: whoever waits on done (StopContainer)
		// returns to a caller that expects the recorded state to be EXITED.
		if d.opts.Listener != nil {
			d.opts.Listener.TaskExited(p.id, ts)
		}
		close(p.done)
	}()
}

// rewait waits again for a task whose wait stream broke (containerd went
// away). It never gives up while containerd is unreachable: the process may
// well run on, and reporting an exit that did not happen makes the kubelet
// start a second instance. Once containerd answers, the real exit is
// reported, with its code, even if it happened meanwhile (the shim keeps
// it); only a task containerd no longer has at all is reported as exited
// with code 255, reason Unknown. It ends early when the driver closes.
func (d *Driver) rewait(p *proc) backends.TaskState {
	wait := time.Second
	for {
		select {
		case <-d.watchCtx.Done():
			return backends.TaskState{State: runtime.ContainerState_CONTAINER_UNKNOWN}
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
		ch, err := p.task.Wait(d.ctx(d.watchCtx))
		if isNotFound(err) {
			return d.lostTask(p.id)
		}
		if err != nil {
			d.log.Debug("containerd away; waiting for the task again", "id", p.id, "error", err)
			continue
		}
		d.log.Info("watching the task again after containerd came back", "id", p.id)
		st := <-ch
		code, at, err := st.Result()
		if isNotFound(err) {
			return d.lostTask(p.id)
		}
		if err != nil {
			d.log.Debug("wait for the task again", "id", p.id, "error", err)
			continue
		}
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: int32(code), ExitedAt: at}
	}
}

// lostTask is the exit of a task containerd no longer has: a containerd
// that restarted deletes tasks whose process exited meanwhile, and the exit
// code then only comes as an event the task's shim forwards once
// containerd is back (within seconds; the shim retries for about 15). It
// is exit code 255, reason Unknown, when none comes.
func (d *Driver) lostTask(id string) backends.TaskState {
	if e, ok := d.exits.get(d.watchCtx, id, 30*time.Second); ok {
		d.log.Info("a task that exited while containerd was away: its exit came as an event", "id", id, "code", e.code)
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: int32(e.code), ExitedAt: e.at}
	}
	d.log.Warn("a task containerd lost, with no exit status: reported as exit code 255, reason Unknown", "id", id)
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 255, Reason: "Unknown", ExitedAt: time.Now()}
}

// RunSandbox implements backends.Runtime.
func (r *Runtime) RunSandbox(ctx context.Context, sb backends.Sandbox) (_ backends.TaskState, retErr error) {
	if err := r.usable(); err != nil {
		return backends.TaskState{}, err
	}
	ctx = r.d.ctx(ctx)
	img, err := r.d.client.GetImage(ctx, sb.Image)
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("sandbox image %q: %w", sb.Image, mapErr(err))
	}
	if err := r.ensureUnpacked(ctx, img); err != nil {
		return backends.TaskState{}, err
	}
	if err := checkSELinux("linux.security_context.selinux_options", sb.Config.GetLinux().GetSecurityContext().GetSelinuxOptions(), r.d.lsm); err != nil {
		return backends.TaskState{}, err
	}
	specOpts, err := r.sandboxSpec(sb, img)
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
	}
	rtOpts, err := r.runtimeOptions()
	if err != nil {
		return backends.TaskState{}, err
	}
	labels := map[string]string{labelKind: kindSandbox, labelHandler: r.name, labelInstance: r.d.opts.Instance}
	cont, err := r.d.client.NewContainer(ctx, sb.ID,
		client.WithSnapshotter(r.h.Snapshotter),
		client.WithNewSnapshot(sb.ID, img, snapshotOpts(sb)...),
		client.WithImageName(img.Name()),
		client.WithNewSpec(specOpts...),
		client.WithRuntime(r.h.RuntimeType, rtOpts),
		client.WithContainerLabels(labels),
	)
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("create pause container: %w", mapErr(err))
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := r.d.cleanupCtx()
			defer cancel()
			if err := cont.Delete(cctx, client.WithSnapshotCleanup); err != nil && !isNotFound(err) {
				r.d.log.Warn("roll back pause container", "id", sb.ID, "error", err)
			}
		}
	}()
	p, err := r.d.startTask(ctx, cont, sb.ID, cio.NullIO, nil, nil)
	if err != nil {
		return backends.TaskState{}, fmt.Errorf("start pause container with %s: %w", r.h.RuntimeType, err)
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: p.pid}, nil
}

// startTask creates and starts cont's task and watches it. On failure it
// leaves no task behind.
// A task created before a crash and never started is taken over (attach
// re-opens its fifos) and started, so a start retried after a restart works.
func (d *Driver) startTask(ctx context.Context, cont client.Container, id string, ioc cio.Creator, cio *containerIO, attach cio.Attach) (*proc, error) {
	task, err := cont.NewTask(ctx, ioc)
	if errdefs.IsAlreadyExists(err) && attach != nil {
		if t, terr := cont.Task(ctx, attach); terr == nil {
			if st, serr := t.Status(ctx); serr == nil && st.Status == client.Created {
				d.log.Info("starting a task created before a restart", "id", id)
				task, err = t, nil
			}
		}
	}
	if err != nil {
		return nil, mapErr(err)
	}
	fault.Point("task/after-create")
	ok := false
	defer func() {
		if !ok {
			cctx, cancel := d.cleanupCtx()
			defer cancel()
			if err := d.deleteTask(cctx, task); err != nil && !isNotFound(err) {
				d.log.Warn("roll back task", "id", id, "error", err)
			}
		}
	}()
	ch, err := task.Wait(d.ctx(context.Background()))
	if err != nil {
		return nil, mapErr(err)
	}
	if err := task.Start(ctx); err != nil {
		return nil, mapErr(err)
	}
	ok = true
	p := &proc{id: id, task: task, io: cio, pid: task.Pid(), done: make(chan struct{})}
	d.watch(p, ch)
	return p, nil
}

func (r *Runtime) ensureUnpacked(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, r.h.Snapshotter)
	if err != nil {
		return fmt.Errorf("image %q: %w", img.Name(), mapErr(err))
	}
	if !ok {
		if err := img.Unpack(ctx, r.h.Snapshotter); err != nil {
			return fmt.Errorf("unpack image %q with %s: %w", img.Name(), r.h.Snapshotter, mapErr(err))
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

// stop signals the task of id and waits for its exit, killing it after timeout.
// A task that is missing or already gone is not an error.
func (r *Runtime) stop(ctx context.Context, id string, sig syscall.Signal, timeout time.Duration) error {
	p := r.d.proc(id)
	if p == nil {
		var err error
		p, err = r.adopt(ctx, id)
		if err != nil || p == nil {
			return err
		}
	}
	ctx = r.d.ctx(ctx)
	if timeout > 0 && sig != syscall.SIGKILL {
		if err := p.killed(p.task.Kill(ctx, sig)); err != nil {
			return fmt.Errorf("signal %s: %w", id, mapErr(err))
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-p.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := p.killed(p.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)); err != nil {
		return fmt.Errorf("kill %s: %w", id, mapErr(err))
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s to exit: %w", id, ctx.Err())
	}
}

// killed filters a kill's error: a process that is gone (not found,
// finished, or whose task was just deleted under the kill, which containerd
// reports as its shim connection closing) was killed as far as the caller
// is concerned, once its exit was handled.
func (p *proc) killed(err error) error {
	if err == nil || isNotFound(err) || strings.Contains(err.Error(), "process already finished") {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return err
	}
}

// adopt starts watching a task crimux did not start in this run (after a
// restart). It returns nil when there is no live task.
func (r *Runtime) adopt(ctx context.Context, id string) (*proc, error) {
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, mapErr(err)
	}
	labels, err := cont.Labels(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	var cio *containerIO
	var attach cioAttach
	if labels[labelKind] == kindContainer {
		cio, err = newContainerIO(logOf(labels), labels[labelStdin] != "", labels[labelStdin] == "once")
		if err != nil {
			return nil, err
		}
		attach = newAttach(cio, labels[labelTTY] == "true")
	}
	task, err := cont.Task(ctx, attach)
	if err != nil && attach != nil {
		// The fifos may be gone; still take the task so it can be stopped.
		task, err = cont.Task(ctx, nil)
	}
	if err != nil {
		if cio != nil {
			cio.Close()
		}
		if isNotFound(err) {
			return nil, nil
		}
		return nil, mapErr(err)
	}
	// A task created and never started (a crash between the two) runs
	// nothing to watch or stop; removing the container deletes it.
	if st, err := task.Status(ctx); err == nil && st.Status == client.Created {
		if cio != nil {
			cio.Close()
		}
		return nil, nil
	}
	ch, err := task.Wait(r.d.ctx(context.Background()))
	if err != nil {
		if cio != nil {
			cio.Close()
		}
		return nil, mapErr(err)
	}
	r.d.mu.Lock()
	if existing := r.d.procs[id]; existing != nil {
		r.d.mu.Unlock()
		if cio != nil {
			cio.Close()
		}
		return existing, nil
	}
	r.d.mu.Unlock()
	p := &proc{id: id, task: task, io: cio, pid: task.Pid(), done: make(chan struct{})}
	r.d.watch(p, ch)
	return p, nil
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
	if err := r.deleteContainer(ctx, id); err != nil {
		return err
	}
	r.d.unmountShm(id)
	return nil
}

func (r *Runtime) deleteContainer(ctx context.Context, id string) error {
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return mapErr(err)
	}
	// A task that never started (or a failed one) may still exist.
	if task, err := cont.Task(ctx, nil); err == nil {
		if err := r.d.deleteTask(ctx, task); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete task of %s: %w", id, mapErr(err))
		}
	}
	if err := cont.Delete(ctx, client.WithSnapshotCleanup); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, mapErr(err))
	}
	if err := r.removeImageVolumes(ctx, id); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(r.d.opts.StateDir, "io", id))
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

// CreateContainer implements backends.Runtime.
func (r *Runtime) CreateContainer(ctx context.Context, c backends.Container) (backends.User, error) {
	if err := r.usable(); err != nil {
		return backends.User{}, err
	}
	ctx = r.d.ctx(ctx)
	img, err := r.d.client.GetImage(ctx, c.Image)
	if err != nil {
		return backends.User{}, fmt.Errorf("image %q: %w", c.Image, mapErr(err))
	}
	if err := r.ensureUnpacked(ctx, img); err != nil {
		return backends.User{}, err
	}
	ic, err := img.Spec(ctx)
	if err != nil {
		return backends.User{}, fmt.Errorf("image %q config: %w", c.Image, mapErr(err))
	}
	pid, err := r.pausePid(ctx, c.Sandbox.ID)
	if err != nil {
		return backends.User{}, err
	}
	shm := ""
	if nsOptions(c.Sandbox).Ipc != runtime.NamespaceMode_NODE {
		shm = r.d.shmDir(c.Sandbox.ID)
	}
	sc := c.Config.GetLinux().GetSecurityContext()
	if err := checkSELinux("linux.security_context.selinux_options", sc.GetSelinuxOptions(), r.d.lsm); err != nil {
		return backends.User{}, err
	}
	aa, err := appArmorProfile(sc, sc.GetPrivileged(), r.d.lsm)
	if err != nil {
		return backends.User{}, err
	}
	if aa == defaultAppArmorProfile {
		if err := r.d.loadDefaultAppArmor(); err != nil {
			return backends.User{}, err
		}
	}
	vols, err := r.imageVolumes(ctx, c)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, err
	}
	fault.Point("create-container/after-volumes")
	specOpts, err := r.containerSpec(c, ic.Config, pid, shm, vols, aa)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, err
	}
	rtOpts, err := r.runtimeOptions()
	if err != nil {
		return backends.User{}, err
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
		labelStopSig:  ic.Config.StopSignal,
	}
	cont, err := r.d.client.NewContainer(ctx, c.ID,
		client.WithSnapshotter(r.h.Snapshotter),
		client.WithNewSnapshot(c.ID, img, snapshotOpts(c.Sandbox)...),
		client.WithImageName(img.Name()),
		client.WithNewSpec(specOpts...),
		client.WithRuntime(r.h.RuntimeType, rtOpts),
		client.WithContainerLabels(labels),
	)
	if err != nil {
		r.cleanupCreate(c.ID)
		return backends.User{}, fmt.Errorf("create container: %w", mapErr(err))
	}
	spec, err := cont.Spec(ctx)
	if err != nil {
		cctx, cancel := r.d.cleanupCtx()
		defer cancel()
		if derr := cont.Delete(cctx, client.WithSnapshotCleanup); derr != nil && !isNotFound(derr) {
			r.d.log.Warn("roll back container", "id", c.ID, "error", derr)
		}
		r.cleanupCreate(c.ID)
		return backends.User{}, fmt.Errorf("read the spec of container %s: %w", c.ID, mapErr(err))
	}
	u := backends.User{UID: int64(spec.Process.User.UID), GID: int64(spec.Process.User.GID)}
	seen := map[int64]bool{}
	for _, g := range spec.Process.User.AdditionalGids {
		if !seen[int64(g)] {
			seen[int64(g)] = true
			u.Groups = append(u.Groups, int64(g))
		}
	}
	return u, nil
}

// cleanupCreate undoes what a failed CreateContainer made.
func (r *Runtime) cleanupCreate(id string) {
	ctx, cancel := r.d.cleanupCtx()
	defer cancel()
	if err := r.removeImageVolumes(ctx, id); err != nil {
		r.d.log.Warn("roll back image volumes", "id", id, "error", err)
	}
}

type cioAttach = cio.Attach

func newAttach(c *containerIO, tty bool) cio.Attach {
	opts := []cio.Opt{cio.WithStreams(c.stdinReader(), c.stdout, c.stderr)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	return cio.NewAttach(opts...)
}

// StartContainer implements backends.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, id string) (backends.TaskState, error) {
	if err := r.usable(); err != nil {
		return backends.TaskState{}, err
	}
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	labels, err := cont.Labels(ctx)
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	cio_, err := newContainerIO(logOf(labels), labels[labelStdin] != "", labels[labelStdin] == "once")
	if err != nil {
		return backends.TaskState{}, err
	}
	opts := []cio.Opt{cio.WithFIFODir(filepath.Join(r.d.opts.StateDir, "io", id)), cio.WithStreams(cio_.stdinReader(), cio_.stdout, cio_.stderr)}
	if labels[labelTTY] == "true" {
		opts = append(opts, cio.WithTerminal)
	}
	p, err := r.d.startTask(ctx, cont, id, cio.NewCreator(opts...), cio_, newAttach(cio_, labels[labelTTY] == "true"))
	if err != nil {
		cio_.Close()
		return backends.TaskState{}, fmt.Errorf("start container: %w", err)
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: p.pid}, nil
}

// StopContainer implements backends.Runtime.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	sig := syscall.SIGTERM
	if cont, err := r.d.client.LoadContainer(r.d.ctx(ctx), id); err == nil {
		if labels, err := cont.Labels(r.d.ctx(ctx)); err == nil && labels[labelStopSig] != "" {
			if s, err := signal.ParseSignal(labels[labelStopSig]); err == nil {
				sig = s
			}
		}
	}
	return r.stop(ctx, id, sig, timeout)
}

// RemoveContainer implements backends.Runtime.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	if err := r.stop(ctx, id, syscall.SIGKILL, 0); err != nil {
		return err
	}
	return r.deleteContainer(ctx, id)
}

// exitedOrCreated is the state of a container without a task: exited (its
// exit recorded in labelExit when the task went) or never started.
func exitedOrCreated(ctx context.Context, cont client.Container) backends.TaskState {
	labels, err := cont.Labels(ctx)
	if err == nil {
		var code int32
		var at string
		if n, _ := fmt.Sscanf(labels[labelExit], "%d %s", &code, &at); n == 2 {
			t, _ := time.Parse(time.RFC3339Nano, at)
			return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: code, ExitedAt: t}
		}
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED}
}

// State implements backends.Runtime.
func (r *Runtime) State(ctx context.Context, id string) (backends.TaskState, error) {
	if p := r.d.proc(id); p != nil {
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: p.pid}, nil
	}
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	task, err := cont.Task(ctx, nil)
	if err != nil {
		if isNotFound(err) {
			return exitedOrCreated(ctx, cont), nil
		}
		return backends.TaskState{}, mapErr(err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	switch st.Status {
	case client.Running, client.Paused, client.Pausing:
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: task.Pid()}, nil
	case client.Stopped:
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: int32(st.ExitStatus), ExitedAt: st.ExitTime}, nil
	case client.Created:
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED}, nil
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_UNKNOWN}, nil
}

// Recover implements backends.Recoverer: it re-attaches to every task
// that still runs, reaps the tasks that exited while crimux was down
// (keeping their exit on the container first), removes tasks that were
// created but never started (a crash between the two), and reports what
// it found; what it could not learn (containerd unreachable) is in failed.
func (r *Runtime) Recover(ctx context.Context, sandboxes []backends.Sandbox, containers []backends.Container) (map[string]backends.TaskState, map[string]error) {
	states, failed := map[string]backends.TaskState{}, map[string]error{}
	ids := make([]string, 0, len(sandboxes)+len(containers))
	for _, s := range sandboxes {
		ids = append(ids, s.ID)
	}
	for _, c := range containers {
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		// Each bounded: one stuck shim must not hold crimux's start.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := r.recoverOne(octx, id)
		cancel()
		if err != nil {
			failed[id] = err
			continue
		}
		states[id] = st
	}
	return states, failed
}

// recoverOne reconciles one sandbox or container with its task.
func (r *Runtime) recoverOne(ctx context.Context, id string) (backends.TaskState, error) {
	st, err := r.State(ctx, id)
	if err != nil {
		return st, err
	}
	switch st.State {
	case runtime.ContainerState_CONTAINER_RUNNING:
		if _, err := r.adopt(ctx, id); err != nil {
			return st, fmt.Errorf("re-attach to task: %w", err)
		}
	case runtime.ContainerState_CONTAINER_EXITED:
		if err := r.reapExited(ctx, id, st); err != nil {
			return st, err
		}
	}
	// CREATED: a task created and never started (a crash between the
	// two) stays; StartContainer takes it over.
	return st, nil
}

// reapExited deletes the task of a container that exited while crimux was
// down, after recording its exit on the container (as watch does), so the
// exit is still known once the task is gone.
func (r *Runtime) reapExited(ctx context.Context, id string, st backends.TaskState) error {
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return mapErr(err)
	}
	if _, err := cont.Task(ctx, nil); isNotFound(err) {
		return nil // reaped already; the exit is on the container
	}
	exit := fmt.Sprintf("%d %s", st.ExitCode, st.ExitedAt.UTC().Format(time.RFC3339Nano))
	if _, err := cont.SetLabels(ctx, map[string]string{labelExit: exit}); err != nil {
		return fmt.Errorf("record the exit on the container: %w", mapErr(err))
	}
	if err := r.deleteTaskOnly(ctx, id); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete exited task: %w", mapErr(err))
	}
	return nil
}

// deleteTask deletes a task that no longer runs or never ran. A task that
// was created and never started is killed and deleted through the task
// service, without waiting for an exit: gVisor's shim reports none for a
// sandbox that never started, and the client's kill-and-wait would hang.
func (d *Driver) deleteTask(ctx context.Context, task client.Task) error {
	st, err := task.Status(ctx)
	if err != nil {
		return err
	}
	if st.Status != client.Created {
		_, err := task.Delete(ctx, client.WithProcessKill)
		return err
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _ = d.client.TaskService().Kill(kctx, &tasksapi.KillRequest{ContainerID: task.ID(), Signal: uint32(syscall.SIGKILL), All: true})
	cancel()
	_, err = d.client.TaskService().Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: task.ID()})
	return err
}

// deleteTaskOnly deletes the task of a container that does not run (exited,
// or created and never started: such a task is killed first, as containerd
// requires), keeping the container.
func (r *Runtime) deleteTaskOnly(ctx context.Context, id string) error {
	ctx = r.d.ctx(ctx)
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	task, err := cont.Task(ctx, nil)
	if err != nil {
		return err
	}
	return r.d.deleteTask(ctx, task)
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errNotRunning = errors.New("container is not running")
