package containerd

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	"github.com/crimux/crimux/backends"
)

// shimTasks stands for containerd's task service: Get asks the task's
// shim for its state (gVisor's shim runs `runsc state`), so it is counted.
type shimTasks struct {
	tasksapi.TasksClient
	created *tasksapi.CreateTaskRequest
	gets    atomic.Int32
	deleted atomic.Int32
}

func (s *shimTasks) Create(_ context.Context, req *tasksapi.CreateTaskRequest, _ ...grpc.CallOption) (*tasksapi.CreateTaskResponse, error) {
	s.created = req
	return &tasksapi.CreateTaskResponse{ContainerID: req.ContainerID, Pid: 4242}, nil
}

func (s *shimTasks) Get(_ context.Context, req *tasksapi.GetRequest, _ ...grpc.CallOption) (*tasksapi.GetResponse, error) {
	s.gets.Add(1)
	if s.created == nil || req.ContainerID != s.created.ContainerID {
		return nil, errdefs.ErrNotFound
	}
	return &tasksapi.GetResponse{Process: &tasktypes.Process{ID: req.ContainerID, Pid: 4242, Status: tasktypes.Status_CREATED}}, nil
}

func (s *shimTasks) Delete(_ context.Context, req *tasksapi.DeleteTaskRequest, _ ...grpc.CallOption) (*tasksapi.DeleteResponse, error) {
	s.deleted.Add(1)
	return &tasksapi.DeleteResponse{ID: req.ContainerID, Pid: 4242, ExitStatus: 3}, nil
}

type oneContainer struct {
	containers.Store
	c containers.Container
}

func (o oneContainer) Get(_ context.Context, id string) (containers.Container, error) {
	if id != o.c.ID {
		return containers.Container{}, errdefs.ErrNotFound
	}
	return o.c, nil
}

func newTestDriver(t *testing.T, shim *shimTasks) (*Driver, client.Container) {
	t.Helper()
	c, err := client.New("", client.WithDefaultNamespace("crimux-test"), client.WithDefaultRuntime("io.containerd.runc.v2"), client.WithServices(
		client.WithTaskClient(&taskClient{TasksClient: shim}),
		client.WithContainerStore(oneContainer{c: containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}}}),
	))
	if err != nil {
		t.Fatal(err)
	}
	cont, err := c.LoadContainer(namespaces.WithNamespace(context.Background(), "crimux-test"), "c1")
	if err != nil {
		t.Fatal(err)
	}
	return &Driver{client: c}, cont
}

// A task crimux creates is the task Create answered with: its pid and IO
// are known, so loading it doesn't ask containerd (and the shim) for the
// state of a task just created, once per pod and container start. A task
// loaded any other way is asked for.
func TestNewTaskDoesNotAskForTheTaskItCreated(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	shim := &shimTasks{}
	d, cont := newTestDriver(t, shim)
	rootfs := []mount.Mount{{Type: "bind", Source: "/var/lib/rootfs/c1", Options: []string{"rbind", "rw"}}}
	task, err := d.newTask(ctx, cont, cio.NullIO, rootfs)
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	if n := shim.gets.Load(); n != 0 {
		t.Errorf("the task just created was loaded with %d Get calls", n)
	}
	if task.ID() != "c1" || task.Pid() != 4242 || task.IO() == nil {
		t.Errorf("task = %s, pid %d, IO %v; want c1, pid 4242 and its IO", task.ID(), task.Pid(), task.IO())
	}
	if got := shim.created.GetRootfs(); len(got) != 1 || got[0].Source != rootfs[0].Source {
		t.Errorf("created with rootfs %v, want %v", got, rootfs)
	}
	if _, err := cont.Task(ctx, nil); err != nil || shim.gets.Load() != 1 {
		t.Errorf("loading the task again: err %v after %d Get calls, want one Get", err, shim.gets.Load())
	}
}

// The task of a process whose exit was just learnt is deleted without
// asking the shim whether it has stopped, once per container and pod stop.
func TestDeleteOfAnExitedTaskDoesNotAskItsState(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	shim := &shimTasks{}
	d, cont := newTestDriver(t, shim)
	task, err := d.newTask(ctx, cont, cio.NullIO, []mount.Mount{{Type: "bind", Source: "/var/lib/rootfs/c1"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{id: "c1", task: task, pid: task.Pid()}
	ts := backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 3, ExitedAt: time.Unix(1700000000, 0)}
	if err := d.deleteExited(ctx, p, ts); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n := shim.gets.Load(); n != 0 {
		t.Errorf("deleting the exited task asked for its state %d times", n)
	}
	if n := shim.deleted.Load(); n != 1 {
		t.Errorf("task deleted %d times, want once", n)
	}
}

// countedContainers counts the reads of containerd's container records.
type countedContainers struct {
	oneContainer
	gets atomic.Int32
}

func (c *countedContainers) Get(ctx context.Context, id string) (containers.Container, error) {
	c.gets.Add(1)
	return c.oneContainer.Get(ctx, id)
}

// A gVisor container that starts is guarded with the memory limit of the
// record StartContainer already holds: no reads of the container's record
// from containerd after its task started. Told with no spec (after a
// restart), the guard reads the stored one.
func TestMemoryGuardTakesTheRecordItIsGiven(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	limit := int64(64 << 20)
	stored := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}}
	rec := containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "io.containerd.runsc.v1"}}
	if err := setSpec(&rec, stored); err != nil {
		t.Fatal(err)
	}
	store := &countedContainers{oneContainer: oneContainer{c: rec}}
	c, err := client.New("", client.WithDefaultNamespace("crimux-test"), client.WithServices(client.WithContainerStore(store)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	d := &Driver{client: c, procs: map[string]*proc{"c1": {id: "c1", pid: 1, done: done}}}
	k := &runscKind{d: d, name: "gvisor", opts: HandlerOptions{RuntimeType: RuntimeRunsc, MemoryLimitCheck: "1h"}}
	guarded := func() int64 {
		k.guards.mu.Lock()
		defer k.guards.mu.Unlock()
		if mg := k.guards.m["c1"]; mg != nil {
			return mg.limit.Load()
		}
		return 0
	}

	k.watch(ctx, "c1", &rec)
	if n := store.gets.Load(); n != 0 {
		t.Errorf("guarding a container whose record was given read it %d times", n)
	}
	if got := guarded(); got != limit {
		t.Fatalf("guarded with limit %d, want %d", got, limit)
	}

	half := limit / 2
	resized := containers.Container{ID: "c1"}
	if err := setSpec(&resized, &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &half}}}}); err != nil {
		t.Fatal(err)
	}
	k.watch(ctx, "c1", &resized)
	if got := guarded(); got != half {
		t.Errorf("after a new record the limit is %d, want %d", got, half)
	}

	k.watch(ctx, "c1", nil)
	if store.gets.Load() == 0 {
		t.Error("with no record given, the stored one was not read")
	}
	if got := guarded(); got != limit {
		t.Errorf("from the stored spec the limit is %d, want %d", got, limit)
	}
}
