package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/image"
)

// fakeRuntime is a backend that records calls and injects errors.
type fakeRuntime struct {
	name string

	mu            sync.Mutex
	RunSandboxErr error
	// WaitsForNetwork makes RunSandbox wait for the pod's network first,
	// as a runtime that reads the netns (gVisor) does.
	WaitsForNetwork bool
	// SandboxStarted, when set, is closed by the first RunSandbox.
	SandboxStarted chan struct{}
	CreateErr      error
	// Commits makes CreateContainer call the container's Commit, as the
	// containerd driver does, before it fails with CreateErr; CommitErr is
	// what Commit returned.
	Commits       bool
	CommitErr     error
	StartErr      error
	ResizeErr     error
	calls         []string
	running       map[string]bool
	recoverStates map[string]backends.TaskState
	recoverFailed map[string]error
	// gates make a call wait ("StartContainer", "CreateContainer", ...)
	// until the test closes the channel; entered is told when it waits.
	gates   map[string]chan struct{}
	entered chan string
}

// gate blocks a call named op while the test holds its gate.
func (f *fakeRuntime) gate(op string) {
	f.mu.Lock()
	g := f.gates[op]
	f.mu.Unlock()
	if g == nil {
		return
	}
	if f.entered != nil {
		f.entered <- op
	}
	<-g
}

var _ backends.Runtime = (*fakeRuntime)(nil)
var _ backends.Recoverer = (*fakeRuntime)(nil)
var _ backends.SandboxResizer = (*fakeRuntime)(nil)

func (f *fakeRuntime) UpdateSandboxResources(ctx context.Context, id string, pod *runtime.LinuxPodSandboxConfig) error {
	f.record(fmt.Sprintf("UpdateSandboxResources %s %d+%d", id, pod.GetResources().GetMemoryLimitInBytes(), pod.GetOverhead().GetMemoryLimitInBytes()))
	return f.ResizeErr
}

func (f *fakeRuntime) record(c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeRuntime) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeRuntime) Handler() string { return f.name }
func (f *fakeRuntime) RunSandbox(ctx context.Context, sb backends.Sandbox) (backends.TaskState, error) {
	f.record("RunSandbox " + sb.ID)
	if f.SandboxStarted != nil {
		close(f.SandboxStarted)
		f.SandboxStarted = nil
	}
	if f.WaitsForNetwork && sb.WaitNetwork != nil {
		if err := sb.WaitNetwork(ctx); err != nil {
			return backends.TaskState{}, err
		}
		f.record("network ready " + sb.ID)
	}
	if f.RunSandboxErr != nil {
		return backends.TaskState{}, f.RunSandboxErr
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 1}, nil
}
func (f *fakeRuntime) StopSandbox(ctx context.Context, id string) error {
	f.gate("StopSandbox")
	f.record("StopSandbox " + id)
	return nil
}
func (f *fakeRuntime) RemoveSandbox(ctx context.Context, id string) error {
	f.record("RemoveSandbox " + id)
	return nil
}
func (f *fakeRuntime) CreateContainer(ctx context.Context, c backends.Container) (backends.User, error) {
	f.gate("CreateContainer")
	f.record("CreateContainer " + c.ID)
	u := backends.User{UID: 1000, GID: 1000, Groups: []int64{1000, 50}}
	if f.Commits && c.Commit != nil {
		err := c.Commit(u)
		f.mu.Lock()
		f.CommitErr = err
		f.mu.Unlock()
		if err != nil {
			return backends.User{}, err
		}
	}
	return u, f.CreateErr
}
func (f *fakeRuntime) StartContainer(ctx context.Context, id string) (backends.TaskState, error) {
	f.gate("StartContainer")
	f.record("StartContainer " + id)
	if f.StartErr != nil {
		return backends.TaskState{}, f.StartErr
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 2}, nil
}
func (f *fakeRuntime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	f.record(fmt.Sprintf("StopContainer %s %s", id, timeout))
	return nil
}
func (f *fakeRuntime) RemoveContainer(ctx context.Context, id string) error {
	f.record("RemoveContainer " + id)
	return nil
}
func (f *fakeRuntime) State(ctx context.Context, id string) (backends.TaskState, error) {
	return backends.TaskState{}, backends.ErrNotFound
}
func (f *fakeRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (backends.ExecResult, error) {
	return backends.ExecResult{Stdout: []byte("out"), ExitCode: 3}, nil
}
func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, s backends.Streams) error {
	return nil
}
func (f *fakeRuntime) Attach(ctx context.Context, id string, s backends.Streams) error { return nil }
func (f *fakeRuntime) ReopenLog(ctx context.Context, id string) error                  { return nil }
func (f *fakeRuntime) UpdateResources(ctx context.Context, id string, r *runtime.LinuxContainerResources) error {
	return nil
}
func (f *fakeRuntime) Stats(ctx context.Context, id string) (*runtime.ContainerStats, error) {
	return &runtime.ContainerStats{}, nil
}
func (f *fakeRuntime) Features() *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{}
}
func (f *fakeRuntime) Recover(ctx context.Context, sbs []backends.Sandbox, cts []backends.Container) (map[string]backends.TaskState, map[string]error) {
	f.record("Recover")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recoverStates, f.recoverFailed
}

// fakeDriver hands out fakeRuntimes.
type fakeDriver struct {
	mu       sync.Mutex
	runtimes map[string]*fakeRuntime
	ReadyErr error
}

func (d *fakeDriver) Name() string { return "containerd" }
func (d *fakeDriver) Runtime(h string) backends.Runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runtimes == nil {
		d.runtimes = map[string]*fakeRuntime{}
	}
	r, ok := d.runtimes[h]
	if !ok {
		r = &fakeRuntime{name: h}
		d.runtimes[h] = r
	}
	return r
}
func (d *fakeDriver) Ready(ctx context.Context) error             { return d.ReadyErr }
func (d *fakeDriver) Version(ctx context.Context) (string, error) { return "fake 1", nil }
func (d *fakeDriver) Close() error                                { return nil }

// fakeImages is an image store holding a fixed set of images.
type fakeImages struct{ imgs []image.Image }

func (s *fakeImages) Pull(ctx context.Context, ref string, a *image.Auth, sn string) (image.Image, error) {
	return s.Get(ctx, ref)
}
func (s *fakeImages) List(ctx context.Context) ([]image.Image, error) { return s.imgs, nil }
func (s *fakeImages) Get(ctx context.Context, ref string) (image.Image, error) {
	for _, i := range s.imgs {
		if i.ID == ref {
			return i, nil
		}
		for _, t := range i.RepoTags {
			if t == ref {
				return i, nil
			}
		}
	}
	return image.Image{}, fmt.Errorf("%w: %s", image.ErrNotFound, ref)
}
func (s *fakeImages) Remove(ctx context.Context, id string) error { return nil }
func (s *fakeImages) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	return nil, nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
