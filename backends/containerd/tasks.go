package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"

	"google.golang.org/protobuf/types/known/timestamppb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/internal/metrics"
)

// Task supervision: every sandbox's and container's task crimux started or
// adopted is a proc, whose exit one goroutine waits for (watch), through
// containerd outages (rewait), and reports to the listener.

// proc is a sandbox's or container's running task that crimux watches.
type proc struct {
	id   string
	task client.Task
	io   *containerIO // nil for sandboxes
	pid  uint32
	// done is closed once the exit was handled.
	done chan struct{}
	// cgroups are the dirs of the task's cgroup as it was created
	// (cgroupstats.go); nil for a task crimux adopted.
	cgroups map[string]string
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
			metrics.ExitWatchReconnects.WithLabelValues(DriverName, "task").Inc()
			ts = d.rewait(p)
			if ts.State == runtime.ContainerState_CONTAINER_UNKNOWN {
				return // the driver closed; the task is left to the next crimux
			}
		}
		ctx, cancel := d.cleanupCtx()
		// The exit is kept on the container before its task goes, so that
		// State (recovery after a crash) can still tell it from "never ran".
		// One update of that label; nothing to read first.
		exit := fmt.Sprintf("%d %s", ts.ExitCode, ts.ExitedAt.UTC().Format(time.RFC3339Nano))
		rec := containers.Container{ID: p.id, Labels: map[string]string{labelExit: exit}}
		if _, err := d.client.ContainerService().Update(ctx, rec, "labels."+labelExit); err != nil && !isNotFound(err) {
			d.log.Warn("record the exit on the container", "id", p.id, "error", err)
		}
		derr := d.deleteExited(ctx, p, ts)
		if derr != nil && !isNotFound(derr) {
			d.log.Warn("delete exited task", "id", p.id, "error", derr)
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
			if derr == nil || isNotFound(derr) {
				d.taskGone[p.id] = true
			}
		}
		d.mu.Unlock()
		// Tell the listener first: whoever waits on done (StopContainer)
		// returns to a caller that expects the recorded state to be EXITED.
		if d.listener != nil {
			d.listener.TaskExited(p.id, ts)
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

// startTask creates and starts cont's task and watches it. On failure it
// leaves no task behind.
// A task created before a crash and never started is taken over (attach
// re-opens its fifos) and started, so a start retried after a restart works.
func (d *Driver) startTask(ctx context.Context, cont client.Container, rootfs []mount.Mount, id string, ioc cio.Creator, cio *containerIO, attach cio.Attach) (*proc, error) {
	task, err := d.newTask(ctx, cont, ioc, rootfs)
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
	// The task's process is in the container's cgroup until the container
	// runs (cgroupstats.go).
	cgroups, _ := cgroupDirs(task.Pid())
	if err := task.Start(ctx); err != nil {
		return nil, mapErr(err)
	}
	ok = true
	p := &proc{id: id, task: task, io: cio, pid: task.Pid(), done: make(chan struct{}), cgroups: cgroups}
	d.watch(p, ch)
	return p, nil
}

// made is a container crimux has just made, with what starting its task
// needs, kept from its creation so that the start needn't read it back.
type made struct {
	cont client.Container
	// rootfs are the mounts its snapshot's Prepare returned; nil when
	// containerd's own path made the snapshot.
	rootfs []mount.Mount
}

// keepMade keeps m for the start of container id.
func (d *Driver) keepMade(id string, m *made) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.made[id] = m
}

// takeMade returns (and forgets) what was kept of container id when it
// was made by this crimux and not started since; nil otherwise.
func (d *Driver) takeMade(id string) *made {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.made[id]
	delete(d.made, id)
	return m
}

// newTask creates cont's task. Given rootfs (the mounts the snapshot's
// Prepare returned when crimux made the container), it asks containerd's
// task service directly: client's Container.NewTask first reads the
// container back three times and the snapshot's mounts once, four round
// trips for what crimux already has; the task's handle is then made from
// Create's reply, with the IO already made (taskclient.go). Without rootfs
// it is Container.NewTask.
func (d *Driver) newTask(ctx context.Context, cont client.Container, ioc cio.Creator, rootfs []mount.Mount) (client.Task, error) {
	if rootfs == nil {
		return cont.NewTask(ctx, ioc)
	}
	i, err := ioc(cont.ID())
	if err != nil {
		return nil, err
	}
	cfg := i.Config()
	req := &tasksapi.CreateTaskRequest{ContainerID: cont.ID(), Terminal: cfg.Terminal, Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr}
	for _, m := range rootfs {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	resp, err := d.client.TaskService().Create(ctx, req)
	if err != nil {
		i.Cancel()
		i.Close()
		return nil, errgrpc.ToNative(err)
	}
	attached := false
	// Loaded from Create's reply, without asking the shim (taskclient.go).
	known := &tasktypes.Process{ContainerID: req.ContainerID, ID: req.ContainerID, Pid: resp.Pid, Status: tasktypes.Status_CREATED,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal}
	task, err := cont.Task(withKnown(ctx, known), func(*cio.FIFOSet) (cio.IO, error) { attached = true; return i, nil })
	if err == nil && !attached {
		// Loaded in an unknown state: the task doesn't hold the IO.
		err = fmt.Errorf("task of %s: created, then found in an unknown state", cont.ID())
	}
	if err != nil {
		cctx, cancel := d.cleanupCtx()
		defer cancel()
		if derr := d.deleteCreatedTask(cctx, cont.ID()); derr != nil && !isNotFound(errgrpc.ToNative(derr)) {
			d.log.Warn("roll back task", "id", cont.ID(), "error", derr)
		}
		i.Cancel()
		i.Close()
		return nil, err
	}
	return task, nil
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
		attach = cio.streams(labels[labelTTY] == "true").attach()
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

// deleteTask deletes a task that no longer runs or never ran. A task that
// was created and never started is killed and deleted through the task
// service, without waiting for an exit: gVisor's shim reports none for a
// sandbox that never started, and the client's kill-and-wait would hang.
// sawExit says whether this crimux handled the exit of id's task and
// deleted it (watch).
func (d *Driver) sawExit(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.taskGone[id]
}

// hasTask says whether containerd may have a task for id: not if its exit
// was handled (watch deleted it), else only a clear NotFound says it has none.
func (d *Driver) hasTask(ctx context.Context, id string) bool {
	if d.sawExit(id) {
		return false
	}
	_, err := d.client.TaskService().Get(d.ctx(ctx), &tasksapi.GetRequest{ContainerID: id})
	return !isNotFound(err)
}

func (d *Driver) forgetTaskGone(id string) {
	d.mu.Lock()
	delete(d.taskGone, id)
	d.mu.Unlock()
}

// deleteExited deletes the task of p, whose exit ts was just learnt: it
// has stopped, and the shim isn't asked (taskclient.go).
func (d *Driver) deleteExited(ctx context.Context, p *proc, ts backends.TaskState) error {
	known := &tasktypes.Process{ContainerID: p.id, ID: p.id, Pid: p.pid, Status: tasktypes.Status_STOPPED,
		ExitStatus: uint32(ts.ExitCode), ExitedAt: timestamppb.New(ts.ExitedAt)}
	_, err := p.task.Delete(withKnown(ctx, known))
	return err
}

func (d *Driver) deleteTask(ctx context.Context, task client.Task) error {
	st, err := task.Status(ctx)
	if err != nil {
		return err
	}
	if st.Status != client.Created {
		_, err := task.Delete(ctx, client.WithProcessKill)
		return err
	}
	return d.deleteCreatedTask(ctx, task.ID())
}

// deleteCreatedTask kills (containerd needs it) and deletes the task of
// container id, created and never started.
func (d *Driver) deleteCreatedTask(ctx context.Context, id string) error {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _ = d.client.TaskService().Kill(kctx, &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true})
	cancel()
	_, err := d.client.TaskService().Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
	return err
}

type cioAttach = cio.Attach

// streams connects a task's fifos to c.
func (c *containerIO) streams(tty bool) fifoStreams {
	s := fifoStreams{stdout: c.stdout, stderr: c.stderr, terminal: tty}
	if c.stdinFeed != nil {
		s.stdin = c.stdinReader
	}
	return s
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errNotRunning = errors.New("container is not running")
