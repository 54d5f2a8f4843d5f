package router

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

func TestReconcileContainer(t *testing.T) {
	now := time.Unix(1000, 0)
	exitAt := time.Unix(900, 0)
	created := sandbox.ContainerStatus{State: runtime.ContainerState_CONTAINER_CREATED}
	running := sandbox.ContainerStatus{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 7, StartedAt: 500}
	unknown := sandbox.ContainerStatus{State: runtime.ContainerState_CONTAINER_UNKNOWN, StartedAt: 500}
	begun := sandbox.ContainerStatus{State: runtime.ContainerState_CONTAINER_RUNNING, StartedAt: 500, StartUnconfirmed: true}
	ts := func(s runtime.ContainerState) backends.TaskState { return backends.TaskState{State: s, Pid: 9} }
	for _, tc := range []struct {
		desc      string
		recorded  sandbox.ContainerStatus
		actual    backends.TaskState
		err       error
		want      runtime.ContainerState
		code      int32
		reason    string
		unchanged bool
	}{
		{desc: "started, crashed before the record said so", recorded: created, actual: ts(runtime.ContainerState_CONTAINER_RUNNING), want: runtime.ContainerState_CONTAINER_RUNNING},
		{desc: "still running", recorded: running, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 7}, want: runtime.ContainerState_CONTAINER_RUNNING, unchanged: true},
		{desc: "unknown but running", recorded: unknown, actual: ts(runtime.ContainerState_CONTAINER_RUNNING), want: runtime.ContainerState_CONTAINER_RUNNING},
		{desc: "exited while crimux was down", recorded: running, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 3, ExitedAt: exitAt}, want: runtime.ContainerState_CONTAINER_EXITED, code: 3, reason: "Error"},
		{desc: "created and exited (never recorded as started)", recorded: created, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitedAt: exitAt}, want: runtime.ContainerState_CONTAINER_EXITED, reason: "Completed"},
		{desc: "never started", recorded: created, actual: ts(runtime.ContainerState_CONTAINER_CREATED), want: runtime.ContainerState_CONTAINER_CREATED, unchanged: true},
		{desc: "task vanished without an exit", recorded: running, actual: ts(runtime.ContainerState_CONTAINER_CREATED), want: runtime.ContainerState_CONTAINER_EXITED, code: 255, reason: "Unknown"},
		{desc: "the runtime lost the container", recorded: running, err: backends.ErrNotFound, want: runtime.ContainerState_CONTAINER_EXITED, code: 255, reason: "Unknown"},
		{desc: "start had begun, task runs", recorded: begun, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING}, want: runtime.ContainerState_CONTAINER_RUNNING},
		{desc: "start had begun, task created and never started", recorded: begun, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED, NeverStarted: true}, want: runtime.ContainerState_CONTAINER_CREATED},
		{desc: "start had begun, no task (it may have run before a reboot)", recorded: begun, actual: ts(runtime.ContainerState_CONTAINER_CREATED), want: runtime.ContainerState_CONTAINER_EXITED, code: 255, reason: "Unknown"},
		{desc: "start had begun, task exited", recorded: begun, actual: backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 1, ExitedAt: exitAt}, want: runtime.ContainerState_CONTAINER_EXITED, code: 1, reason: "Error"},
		{desc: "start had begun, the runtime lost the container", recorded: begun, err: backends.ErrNotFound, want: runtime.ContainerState_CONTAINER_EXITED, code: 255, reason: "Unknown"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, changed := reconcileContainer(tc.recorded, tc.actual, tc.err, now)
			if got.State != tc.want || got.ExitCode != tc.code || got.Reason != tc.reason || changed == tc.unchanged {
				t.Fatalf("got %s code %d reason %q changed %v; want %s code %d reason %q changed %v", got.State, got.ExitCode, got.Reason, changed, tc.want, tc.code, tc.reason, !tc.unchanged)
			}
			if got.StartUnconfirmed {
				t.Fatal("still marked unconfirmed after the runtime answered")
			}
			if got.State == runtime.ContainerState_CONTAINER_CREATED && got.StartedAt != 0 {
				t.Fatalf("CREATED with a start time %d", got.StartedAt)
			}
			if got.State == runtime.ContainerState_CONTAINER_EXITED && (got.FinishedAt == 0 || got.StartedAt > got.FinishedAt) {
				t.Fatalf("exit times: started %d finished %d", got.StartedAt, got.FinishedAt)
			}
		})
	}
}

// A runtime that can't answer at start (containerd away) changes nothing:
// records stay as they were and are asked about again until it answers.
func TestRecoverTransientErrorKeepsRecords(t *testing.T) {
	root := t.TempDir()
	f := newFixture(t, root)
	ctx := context.Background()
	pod := podCfg("p")
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}}
	cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, root)
	rt := g.drv.Runtime("runc").(*fakeRuntime)
	away := errors.New("connection refused")
	rt.recoverFailed = map[string]error{sb.PodSandboxId: away, cr.ContainerId: away}
	if err := g.r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	ps, _ := g.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId})
	cs, _ := g.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if ps.Status.State != runtime.PodSandboxState_SANDBOX_READY || cs.Status.State != runtime.ContainerState_CONTAINER_RUNNING || g.r.pending.len() != 2 {
		t.Fatalf("after a transient error: pod %s, container %s, %d pending", ps.Status.State, cs.Status.State, g.r.pending.len())
	}
	// Saved records are unchanged on disk too.
	if l := g.r.ckpt.Load(); l.Sandboxes[0].Status().State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("record saved as %s", l.Sandboxes[0].Status().State)
	}
	// Once the runtime answers, the exit that happened meanwhile is recorded.
	rt.mu.Lock()
	rt.recoverFailed = nil
	rt.recoverStates = map[string]backends.TaskState{
		sb.PodSandboxId: {State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 1},
		cr.ContainerId:  {State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 4, ExitedAt: time.Now()},
	}
	rt.mu.Unlock()
	g.r.reconcile(ctx, g.r.pending.has)
	cs, _ = g.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if cs.Status.State != runtime.ContainerState_CONTAINER_EXITED || cs.Status.ExitCode != 4 || g.r.pending.len() != 0 {
		t.Fatalf("after the runtime answered: %s code %d, %d pending", cs.Status.State, cs.Status.ExitCode, g.r.pending.len())
	}
}

// An unreadable record never makes the start-up sweep remove what it named;
// a records dir that can't be read stops the sweep altogether.
func TestRecoverQuarantineIsNotSwept(t *testing.T) {
	root := t.TempDir()
	f := newFixture(t, root)
	ctx := context.Background()
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("q")})
	if err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(root, "sandboxes", sb.PodSandboxId+".json")
	if err := os.WriteFile(rec, []byte(`{"id": "`), 0o600); err != nil { // torn
		t.Fatal(err)
	}
	g := newFixture(t, root)
	sw := &fakeSweeper{}
	g.addDriver(t, "sweeper", sw)
	if err := g.r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if !sw.called || !sw.known(sb.PodSandboxId) {
		t.Fatalf("the sweep was not told the quarantined ID is known (called %v)", sw.called)
	}
	if _, err := os.Stat(filepath.Join(root, "quarantine")); err != nil {
		t.Fatalf("no quarantine: %v", err)
	}
	// No records dir to read: no sweep at all.
	h := newFixture(t, root)
	sw2 := &fakeSweeper{}
	h.addDriver(t, "sweeper", sw2)
	_ = os.RemoveAll(filepath.Join(root, "containers"))
	_ = os.WriteFile(filepath.Join(root, "containers"), nil, 0o600)
	if err := h.r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if sw2.called {
		t.Fatal("swept although the records could not all be read")
	}
}

// fakeSweeper is a driver whose Sweep records what it was told is known.
type fakeSweeper struct {
	fakeDriver
	called bool
	known  func(string) bool
}

func (s *fakeSweeper) Sweep(ctx context.Context, known func(string) bool) ([]string, error) {
	s.called = true
	s.known = known
	return nil, nil
}

// One operation at a time per pod: a stop waits for a start that is under
// way (and then stops what it started); a container can't be created in a
// pod that a removal is taking away; a late save never brings a removed
// pod's record back.
func TestPerPodSerialisation(t *testing.T) {
	ctx := context.Background()
	t.Run("StopContainer waits for StartContainer", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		sb, _ := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("s")})
		cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}}})
		if err != nil {
			t.Fatal(err)
		}
		rt := f.drv.Runtime("runc").(*fakeRuntime)
		gate := make(chan struct{})
		rt.gates = map[string]chan struct{}{"StartContainer": gate}
		rt.entered = make(chan string, 1)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId})
		}()
		<-rt.entered
		go func() {
			defer wg.Done()
			_, _ = f.r.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: cr.ContainerId, Timeout: 1})
		}()
		time.Sleep(100 * time.Millisecond)
		close(gate)
		wg.Wait()
		calls := rt.Calls()
		if len(calls) < 2 || calls[len(calls)-2] != "StartContainer "+cr.ContainerId || calls[len(calls)-1] != "StopContainer "+cr.ContainerId+" 1s" {
			t.Fatalf("calls %v: the stop did not wait for the start and stop what it started", calls)
		}
	})
	t.Run("CreateContainer against RemovePodSandbox", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		sb, _ := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("r")})
		rt := f.drv.Runtime("runc").(*fakeRuntime)
		gate := make(chan struct{})
		rt.gates = map[string]chan struct{}{"CreateContainer": gate}
		rt.entered = make(chan string, 1)
		var wg sync.WaitGroup
		wg.Add(2)
		var createErr error
		go func() {
			defer wg.Done()
			_, createErr = f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId,
				Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}}})
		}()
		<-rt.entered
		go func() {
			defer wg.Done()
			_, _ = f.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		}()
		time.Sleep(100 * time.Millisecond)
		close(gate)
		wg.Wait()
		if createErr != nil {
			t.Fatalf("the create that came first failed: %v", createErr)
		}
		if n := len(f.r.containers.List()); n != 0 {
			t.Fatalf("%d containers left for a removed pod", n)
		}
		if l := f.r.ckpt.Load(); len(l.Containers)+len(l.Sandboxes) != 0 {
			t.Fatalf("records left: %d sandboxes, %d containers", len(l.Sandboxes), len(l.Containers))
		}
		if n := f.r.locks.size(); n != 0 {
			t.Fatalf("%d locks left", n)
		}
	})
	t.Run("StopPodSandbox against RemovePodSandbox", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		sb, _ := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("x")})
		rt := f.drv.Runtime("runc").(*fakeRuntime)
		gate := make(chan struct{})
		rt.gates = map[string]chan struct{}{"StopSandbox": gate}
		rt.entered = make(chan string, 4)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = f.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		}()
		<-rt.entered
		go func() {
			defer wg.Done()
			_, _ = f.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		}()
		time.Sleep(100 * time.Millisecond)
		close(gate)
		wg.Wait()
		if l := f.r.ckpt.Load(); len(l.Sandboxes) != 0 {
			t.Fatalf("a removed pod's record came back")
		}
	})
}

// StartContainer writes the record (CREATED, with the time the start
// began) while the task starts: a crimux that dies before the start
// returns is recovered with the container RUNNING since that time, and one
// whose task never ran stays CREATED without a start time. Until the
// runtime answers, such a container is taken for RUNNING.
func TestStartTimeSurvivesACrashDuringStart(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	f := newFixture(t, root)
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("s")})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}}})
	if err != nil {
		t.Fatal(err)
	}
	rt := f.drv.Runtime("runc").(*fakeRuntime)
	gate := make(chan struct{})
	defer close(gate)
	rt.mu.Lock()
	rt.gates = map[string]chan struct{}{"StartContainer": gate}
	rt.mu.Unlock()
	rt.entered = make(chan string, 1)
	before := time.Now().UnixNano()
	go func() { _, _ = f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}) }()
	<-rt.entered
	// The task is starting (held by the gate) and the record is written
	// meanwhile; then crimux dies: other routers read what is on disk.
	var startedAt int64
	for deadline := time.Now().Add(10 * time.Second); startedAt == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var rec struct {
			Status sandbox.ContainerStatus `json:"status"`
		}
		if b, err := os.ReadFile(filepath.Join(root, "containers", cr.ContainerId+".json")); err == nil && json.Unmarshal(b, &rec) == nil {
			startedAt = rec.Status.StartedAt
		}
	}
	if startedAt < before {
		t.Fatalf("the record has start time %d while the task starts, want one from after %d", startedAt, before)
	}
	crashed := root
	recoverWith := func(root string, st backends.TaskState, err error) *runtime.ContainerStatus {
		t.Helper()
		crashed := filepath.Join(t.TempDir(), "root")
		if err := os.CopyFS(crashed, os.DirFS(root)); err != nil {
			t.Fatal(err)
		}
		g := newFixture(t, crashed)
		grt := g.drv.Runtime("runc").(*fakeRuntime)
		grt.recoverStates = map[string]backends.TaskState{sb.PodSandboxId: {State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 1}}
		if err != nil {
			grt.recoverFailed = map[string]error{cr.ContainerId: err}
		} else {
			grt.recoverStates[cr.ContainerId] = st
		}
		if err := g.r.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		cs, err := g.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
		if err != nil {
			t.Fatal(err)
		}
		// Let a retry in the background find an answer and end.
		grt.mu.Lock()
		grt.recoverFailed = nil
		grt.recoverStates[cr.ContainerId] = backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 2}
		grt.mu.Unlock()
		return cs.Status
	}
	if st := recoverWith(crashed, backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 2}, nil); st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt != startedAt {
		t.Errorf("task runs: recovered %s started %d, want RUNNING started %d", st.State, st.StartedAt, startedAt)
	}
	if st := recoverWith(crashed, backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED, NeverStarted: true}, nil); st.State != runtime.ContainerState_CONTAINER_CREATED || st.StartedAt != 0 {
		t.Errorf("task never started: recovered %s started %d, want CREATED never started", st.State, st.StartedAt)
	}
	// No task at all: it may have run and gone with a reboot; never
	// reported CREATED (the kubelet would run it again whatever its
	// restart policy).
	if st := recoverWith(crashed, backends.TaskState{State: runtime.ContainerState_CONTAINER_CREATED}, nil); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 255 {
		t.Errorf("no task: recovered %s code %d, want EXITED 255", st.State, st.ExitCode)
	}
	if st := recoverWith(crashed, backends.TaskState{}, errors.New("connection refused")); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("runtime away: recovered %s, want RUNNING until it answers", st.State)
	}
}
