package router

import (
	"context"
	"errors"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// pendingSet holds the IDs whose records recovery has not reconciled yet.
type pendingSet struct {
	mu  sync.Mutex // guards ids
	ids map[string]bool
}

func (p *pendingSet) set(id string, pending bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pending {
		p.ids[id] = true
	} else {
		delete(p.ids, id)
	}
}

func (p *pendingSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func (p *pendingSet) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[id]
}

// Recover loads the records of a previous run, removes what a crash left
// that no record names, and reconciles every record with what its runtime
// says. A record the runtime can't answer for yet (containerd away, a
// transient error) keeps its state and is retried in the background until
// it can: a passing outage never makes crimux forget a pod or report exits
// that did not happen.
func (r *Router) Recover(ctx context.Context) error {
	l := r.ckpt.Load()
	for _, err := range l.Errs {
		r.log.Error("unreadable record quarantined; what it names is left alone", "error", err)
	}
	for _, sb := range l.Sandboxes {
		r.sandboxes.Add(sb.ID, sb)
		_ = r.sandboxNames.Reserve(sb.Name, sb.ID)
	}
	for _, c := range l.Containers {
		_ = c.Update(startBegun)
		r.containers.Add(c.ID, c)
		_ = r.containerNames.Reserve(c.Name, c.ID)
	}
	if l.Complete {
		r.sweepOrphans(ctx, l.Sandboxes, l.Containers, l.Quarantined)
	} else {
		r.log.Error("not sweeping leftovers: the records could not all be read, so crimux can't tell what is its own")
	}
	r.reconcile(ctx, nil)
	r.retryDel(ctx)
	if r.pending.len() > 0 {
		go r.retryReconcile()
	}
	r.log.Info("recovered state", "sandboxes", len(l.Sandboxes), "containers", len(l.Containers), "quarantined", len(l.Quarantined), "pending", r.pending.len())
	return nil
}

// retryReconcile asks again for the records recovery could not reconcile,
// backing off to 30 s, until none is left.
func (r *Router) retryReconcile() {
	wait := time.Second
	for r.pending.len() > 0 {
		time.Sleep(wait)
		wait = min(2*wait, 30*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r.reconcile(ctx, r.pending.has)
		cancel()
	}
	r.log.Info("every record is reconciled with its runtime")
}

// reconcile asks each handler's runtime about the records in a state that
// a crash or an outage may have made stale (ready pods; created, running
// and unknown containers); when only is given, about those it selects.
func (r *Router) reconcile(ctx context.Context, only func(string) bool) {
	type group struct {
		sbs []*sandbox.Sandbox
		cts []*sandbox.Container
	}
	groups := map[string]*group{}
	get := func(h string) *group {
		if groups[h] == nil {
			groups[h] = &group{}
		}
		return groups[h]
	}
	handlerOf := map[string]string{}
	for _, sb := range r.sandboxes.List() {
		handlerOf[sb.ID] = sb.Handler
		if (only == nil || only(sb.ID)) && sb.Status().State == runtime.PodSandboxState_SANDBOX_READY {
			get(sb.Handler).sbs = append(get(sb.Handler).sbs, sb)
		}
	}
	for _, c := range r.containers.List() {
		h, ok := handlerOf[c.SandboxID]
		if !ok || (only != nil && !only(c.ID)) {
			continue
		}
		switch c.Status().State {
		case runtime.ContainerState_CONTAINER_CREATED, runtime.ContainerState_CONTAINER_RUNNING, runtime.ContainerState_CONTAINER_UNKNOWN:
			get(h).cts = append(get(h).cts, c)
		}
	}
	now := time.Now()
	for h, g := range groups {
		rec, ok := r.runtimeOf(&sandbox.Sandbox{Metadata: sandbox.Metadata{Handler: h}}).(backends.Recoverer)
		if !ok {
			continue
		}
		var bs []backends.Sandbox
		for _, sb := range g.sbs {
			bs = append(bs, r.backendSandbox(sb))
		}
		var bc []backends.Container
		for _, c := range g.cts {
			bc = append(bc, backends.Container{ID: c.ID})
		}
		states, failed := rec.Recover(ctx, bs, bc)
		answer := func(id string) (backends.TaskState, error) {
			st, ok := states[id]
			err := failed[id]
			if !ok && err == nil {
				err = errors.New("the runtime did not report it")
			}
			return st, err
		}
		for _, sb := range g.sbs {
			st, err := answer(sb.ID)
			if err != nil && !errors.Is(err, backends.ErrNotFound) {
				r.log.Warn("can't tell the state of a pod yet; its record is kept and asked about again", "id", sb.ID, "error", err)
				r.pending.set(sb.ID, true)
				continue
			}
			r.pending.set(sb.ID, false)
			unlock := r.lockPod(sb.ID)
			if next, changed := reconcileSandbox(sb.Status(), st, err); changed {
				_ = sb.Update(func(sandbox.Status) (sandbox.Status, error) { return next, nil })
				r.saveSandbox(sb)
				r.log.Warn("pod sandbox is no longer running", "id", sb.ID)
			}
			unlock()
		}
		for _, c := range g.cts {
			st, err := answer(c.ID)
			if err != nil && !errors.Is(err, backends.ErrNotFound) {
				r.log.Warn("can't tell the state of a container yet; its record is kept and asked about again", "id", c.ID, "error", err)
				r.pending.set(c.ID, true)
				continue
			}
			r.pending.set(c.ID, false)
			unlock := r.lockContainer(c.ID)
			before := c.Status()
			if next, changed := reconcileContainer(before, st, err, now); changed {
				_ = c.Update(func(sandbox.ContainerStatus) (sandbox.ContainerStatus, error) { return next, nil })
				r.saveContainer(c)
				r.log.Info("container record reconciled with its runtime", "id", c.ID, "was", before.State, "now", next.State, "exit_code", next.ExitCode, "reason", next.Reason)
				if next.State == runtime.ContainerState_CONTAINER_EXITED {
					r.emit(c, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
				}
			}
			unlock()
		}
	}
}

// startBegun takes a record that a crash left CREATED with a start time
// (StartContainer had begun: it writes the record while the task starts)
// for RUNNING until the runtime answers: the task most likely runs, and a
// kubelet told CREATED would start it again or replace it.
func startBegun(st sandbox.ContainerStatus) (sandbox.ContainerStatus, error) {
	if st.State == runtime.ContainerState_CONTAINER_CREATED && st.StartedAt != 0 {
		st.State = runtime.ContainerState_CONTAINER_RUNNING
		st.StartUnconfirmed = true
	}
	return st, nil
}

// reconcileSandbox is a ready pod's record after recovery: a pod whose
// pause process no longer runs (or that the runtime lost) is NOTREADY.
func reconcileSandbox(st sandbox.Status, actual backends.TaskState, err error) (sandbox.Status, bool) {
	if err == nil && actual.State == runtime.ContainerState_CONTAINER_RUNNING {
		if st.Pid != actual.Pid && actual.Pid != 0 {
			st.Pid = actual.Pid
			return st, true
		}
		return st, false
	}
	st.State = runtime.PodSandboxState_SANDBOX_NOTREADY
	st.Pid = 0
	return st, true
}

// reconcileContainer is a container's record after recovery, from what its
// runtime says (err is nil or wraps ErrNotFound):
//   - running: RUNNING (a record whose start had begun, StartUnconfirmed:
//     crimux crashed while starting it, so it must not be started twice);
//   - exited: EXITED with the runtime's code and time;
//   - created: unchanged for a CREATED record, and CREATED again, without
//     a start time, for one whose start had begun when the runtime knows
//     its task never started (the crash came between creating and starting
//     it); for a RUNNING one, or a begun one the runtime can't say never
//     started (its task may have run and gone with a reboot), the task is
//     gone without an exit status (a reboot, containerd's state lost), so it
//     exited, code 255, reason Unknown;
//   - the runtime has no such container: likewise exited, 255, Unknown.
func reconcileContainer(st sandbox.ContainerStatus, actual backends.TaskState, err error, now time.Time) (sandbox.ContainerStatus, bool) {
	unconfirmed := st.StartUnconfirmed
	st.StartUnconfirmed = false
	lost := func(msg string) (sandbox.ContainerStatus, bool) {
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st, false
		}
		st.State = runtime.ContainerState_CONTAINER_EXITED
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = msg
		st.Pid = 0
		st.FinishedAt = now.UnixNano()
		if st.StartedAt == 0 || st.StartedAt > st.FinishedAt {
			st.StartedAt = st.FinishedAt
		}
		return st, true
	}
	if err != nil {
		return lost("the runtime has no record of the container (containerd lost its state)")
	}
	switch actual.State {
	case runtime.ContainerState_CONTAINER_RUNNING:
		changed := st.State != runtime.ContainerState_CONTAINER_RUNNING || st.Pid != actual.Pid || unconfirmed
		if st.State != runtime.ContainerState_CONTAINER_RUNNING {
			st.State = runtime.ContainerState_CONTAINER_RUNNING
			st.Reason, st.Message = "", ""
			if st.StartedAt == 0 {
				st.StartedAt = now.UnixNano()
			}
		}
		st.Pid = actual.Pid
		return st, changed
	case runtime.ContainerState_CONTAINER_EXITED:
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st, false
		}
		at := actual.ExitedAt
		if at.IsZero() {
			at = now
		}
		c := sandbox.NewContainer(sandbox.ContainerMetadata{}, st)
		c.Exited(actual.ExitCode, at, actual.Reason)
		return c.Status(), true
	case runtime.ContainerState_CONTAINER_CREATED:
		if st.State == runtime.ContainerState_CONTAINER_CREATED {
			return st, false
		}
		if unconfirmed && actual.NeverStarted {
			st.State = runtime.ContainerState_CONTAINER_CREATED
			st.StartedAt, st.Pid = 0, 0
			return st, true
		}
		return lost("the container's task is gone without an exit status (the node rebooted or containerd lost its state)")
	}
	return st, false
}

// retryDel releases the network of stopped pods whose CNI DEL failed
// before (a plugin that failed or hung): at start, as at a later stop or
// remove, so that no IP stays allocated for a pod that no longer runs.
func (r *Router) retryDel(ctx context.Context) {
	for _, sb := range r.sandboxes.List() {
		st := sb.Status()
		if st.State != runtime.PodSandboxState_SANDBOX_NOTREADY || !st.NetworkReady {
			continue
		}
		unlock := r.lockPod(sb.ID)
		if err := r.cni.Teardown(r.cniPod(sb.Metadata)); err != nil {
			r.log.Warn("release the network of a stopped pod (CNI DEL); retried at its stop or removal", "id", sb.ID, "error", err)
		} else {
			_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
				s.NetworkReady = false
				return s, nil
			})
			r.saveSandbox(sb)
		}
		unlock()
	}
}
