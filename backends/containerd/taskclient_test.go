package containerd

import (
	"context"
	"sync/atomic"
	"testing"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
)

// shimTasks stands for containerd's task service: Get asks the task's
// shim for its state (gVisor's shim runs `runsc state`), so it is counted.
type shimTasks struct {
	tasksapi.TasksClient
	created *tasksapi.CreateTaskRequest
	gets    atomic.Int32
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

// A task crimux creates is the task Create answered with: its pid and IO
// are known, so loading it doesn't ask containerd (and the shim) for the
// state of a task just created, once per pod and container start. A task
// loaded any other way is asked for.
func TestNewTaskDoesNotAskForTheTaskItCreated(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	shim := &shimTasks{}
	c, err := client.New("", client.WithDefaultNamespace("crimux-test"), client.WithServices(
		client.WithTaskClient(&taskClient{TasksClient: shim}),
		client.WithContainerStore(oneContainer{c: containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}}}),
	))
	if err != nil {
		t.Fatal(err)
	}
	d := &Driver{client: c}
	cont, err := c.LoadContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
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
