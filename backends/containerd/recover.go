package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/crimux/crimux/backends"
)

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
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED, NeverStarted: true}, nil
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
	for _, c := range containers {
		if states[c.ID].State == runtime.ContainerState_CONTAINER_RUNNING {
			r.watchContainer(ctx, c.ID, nil)
		}
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

var _ backends.Sweeper = (*Driver)(nil)

// Sweep implements backends.Sweeper: crimux's containers in containerd (its
// labels say so) that no record names are what a crash between creating
// them and saving their record left; they are removed like any other, task,
// snapshot and shm included, containers before the sandboxes they joined.
func (d *Driver) Sweep(ctx context.Context, known func(id string) bool) ([]string, error) {
	ctx = d.ctx(ctx)
	if d.opts.Instance == "" {
		return nil, errors.New("sweep: no instance ID to tell this crimux's containers from another's")
	}
	list, err := d.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", mapErr(err))
	}
	type orphan struct{ id, kind, handler string }
	var orphans []orphan
	for _, c := range list {
		if known(c.ID()) {
			continue
		}
		labels, err := c.Labels(ctx)
		if err != nil {
			continue
		}
		orphans = append(orphans, orphan{c.ID(), labels[labelKind], labels[labelHandler]})
	}
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].kind != kindSandbox && orphans[j].kind == kindSandbox })
	var removed []string
	var errs []error
	for _, o := range orphans {
		rt, _ := d.Runtime(o.handler).(interface {
			RemoveSandbox(context.Context, string) error
			RemoveContainer(context.Context, string) error
		})
		if rt == nil {
			continue
		}
		remove := rt.RemoveContainer
		if o.kind == kindSandbox {
			remove = rt.RemoveSandbox
		}
		// Bounded: a sweep must never hold crimux's start for good.
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := remove(rctx, o.id)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s %s: %w", o.kind, o.id, err))
			continue
		}
		removed = append(removed, o.id)
	}
	removed = append(removed, d.sweepShm(known)...)
	vols, err := d.sweepImageVolumes(ctx, known)
	removed = append(removed, vols...)
	groups, gerr := d.sweepPodGroups(ctx, known)
	removed = append(removed, groups...)
	leases, lerr := d.sweepLeases(ctx)
	removed = append(removed, leases...)
	return removed, errors.Join(append(errs, err, gerr, lerr)...)
}

// sweepShm unmounts and removes the shm of each pod no record names:
// RunPodSandbox mounts it before the pod's containerd container exists, so a
// crash in between leaves a mount that no containerd container leads to.
func (d *Driver) sweepShm(known func(string) bool) []string {
	var removed []string
	ents, _ := os.ReadDir(filepath.Join(d.opts.StateDir, "sandboxes"))
	for _, e := range ents {
		if known(e.Name()) {
			continue
		}
		d.unmountShm(e.Name())
		removed = append(removed, "shm/"+e.Name())
	}
	return removed
}

// sweepImageVolumes removes the image volumes a crash left for containers
// no record names: their mounts under state_dir/imagevols, and the snapshot
// views labelled with this instance (a crash may fall between the view and
// its mount).
func (d *Driver) sweepImageVolumes(ctx context.Context, known func(string) bool) ([]string, error) {
	var removed []string
	var errs []error
	ents, _ := os.ReadDir(filepath.Join(d.opts.StateDir, "imagevols"))
	for _, e := range ents {
		if known(e.Name()) {
			continue
		}
		if err := d.unmountImageVolumes(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "imagevols/"+e.Name())
	}
	for _, sn := range d.snapshotters() {
		svc := d.client.SnapshotService(sn)
		var keys []string
		err := svc.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if id, ok := imageVolumeContainer(info.Name); ok && !known(id) {
				keys = append(keys, info.Name)
			}
			return nil
		}, fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s snapshots: %w", sn, mapErr(err)))
			continue
		}
		for _, k := range keys {
			if err := svc.Remove(ctx, k); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove snapshot %s: %w", k, mapErr(err)))
				continue
			}
			removed = append(removed, "snapshot/"+k)
		}
	}
	return removed, errors.Join(errs...)
}
