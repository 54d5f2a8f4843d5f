// Package backendtest is the suite every driver's runtimes must pass: the
// contract of backends.Runtime exercised directly, without the router, on a
// real driver (what the router relies on: states, exit codes, idempotent
// stop and remove, exits reported to the Listener, errors that wrap the
// backends sentinels). A driver's test builds its driver with a Recorder as
// its Listener and calls Run once per handler.
package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// Config is what Run needs.
type Config struct {
	Driver  backends.Driver
	Handler string
	// Recorder is the Listener the driver was built with.
	Recorder *Recorder
	// PauseImage and Image are references present in the driver's image
	// store: a sandbox image, and an image with sh, sleep and echo.
	PauseImage, Image string
	// Dir is a scratch directory (netns pins, logs); it is not removed here.
	Dir string
}

// Recorder is a backends.Listener that keeps what it heard.
type Recorder struct {
	mu    sync.Mutex
	exits map[string]backends.TaskState
	ooms  map[string]int
}

var _ backends.Listener = (*Recorder)(nil)

// TaskExited implements backends.Listener.
func (r *Recorder) TaskExited(id string, st backends.TaskState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exits == nil {
		r.exits = map[string]backends.TaskState{}
	}
	r.exits[id] = st
}

// TaskOOM implements backends.Listener.
func (r *Recorder) TaskOOM(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ooms == nil {
		r.ooms = map[string]int{}
	}
	r.ooms[id]++
}

// Exit returns the exit heard for id, if any.
func (r *Recorder) Exit(id string) (backends.TaskState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.exits[id]
	return st, ok
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs the suite against cfg.Handler's runtime.
func Run(t *testing.T, cfg Config) {
	rt := cfg.Driver.Runtime(cfg.Handler)
	if rt == nil || rt.Handler() != cfg.Handler {
		t.Fatalf("driver %s has no runtime for handler %q", cfg.Driver.Name(), cfg.Handler)
	}
	s := &suite{cfg: cfg, rt: rt}
	t.Run("Features", s.features)
	t.Run("SandboxLifecycle", s.sandboxLifecycle)
	t.Run("ContainerLifecycle", s.containerLifecycle)
	t.Run("ExitReported", s.exitReported)
	t.Run("UnknownIDs", s.unknownIDs)
	t.Run("Recover", s.recover)
}

type suite struct {
	cfg Config
	rt  backends.Runtime
}

// remote: the runtime runs its pods elsewhere (it owns their network), where
// the CRI tells no pids; a local one reports its processes' pids.
func (s *suite) remote() bool {
	n, ok := s.rt.(backends.NetworkOwner)
	return ok && n.OwnsNetwork()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// sandbox starts a sandbox in a netns of its own and removes both at the end.
func (s *suite) sandbox(t *testing.T, name string) backends.Sandbox {
	t.Helper()
	id := newID()
	netns, err := sandbox.NewNetNS(filepath.Join(s.cfg.Dir, "netns"), id)
	if err != nil {
		t.Fatal(err)
	}
	sb := backends.Sandbox{
		ID:      id,
		Handler: s.cfg.Handler,
		Config: &runtime.PodSandboxConfig{
			Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "backendtest", Uid: id[:12]},
			Hostname:     name,
			LogDirectory: filepath.Join(s.cfg.Dir, "logs", id),
			Linux:        &runtime.LinuxPodSandboxConfig{},
		},
		NetNSPath: netns,
		Image:     s.cfg.PauseImage,
		Dir:       filepath.Join(s.cfg.Dir, "pods", id),
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.rt.StopSandbox(c, id)
		_ = s.rt.RemoveSandbox(c, id)
		_ = sandbox.RemoveNetNS(netns)
	})
	st, err := s.rt.RunSandbox(ctx(t), sb)
	if err != nil {
		t.Fatalf("RunSandbox: %v", err)
	}
	if st.State != runtime.ContainerState_CONTAINER_RUNNING || (st.Pid == 0 && !s.remote()) {
		t.Fatalf("RunSandbox: state %v pid %d, want running with a pid", st.State, st.Pid)
	}
	return sb
}

// container creates (and with start, starts) a container running cmd.
func (s *suite) container(t *testing.T, sb backends.Sandbox, name string, start bool, cmd ...string) string {
	t.Helper()
	id := newID()
	c := backends.Container{
		ID:      id,
		Sandbox: sb,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: name},
			Image:    &runtime.ImageSpec{Image: s.cfg.Image},
			Command:  cmd,
			LogPath:  name + ".log",
			Linux:    &runtime.LinuxContainerConfig{},
		},
		Image:   s.cfg.Image,
		LogDir:  sb.Config.LogDirectory,
		LogPath: name + ".log",
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.rt.RemoveContainer(c, id)
	})
	if _, err := s.rt.CreateContainer(ctx(t), c); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if st, err := s.rt.State(ctx(t), id); err != nil || st.State != runtime.ContainerState_CONTAINER_CREATED {
		t.Fatalf("State after create: %+v %v, want created", st, err)
	}
	if start {
		st, err := s.rt.StartContainer(ctx(t), id)
		if err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		if st.State != runtime.ContainerState_CONTAINER_RUNNING || (st.Pid == 0 && !s.remote()) {
			t.Fatalf("StartContainer: state %v pid %d", st.State, st.Pid)
		}
	}
	return id
}

func (s *suite) waitExited(t *testing.T, id string) backends.TaskState {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := s.rt.State(ctx(t), id)
		if err == nil && st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not exit: %+v %v", id, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *suite) features(t *testing.T) {
	if s.rt.Features() == nil {
		t.Error("Features is nil")
	}
}

func (s *suite) sandboxLifecycle(t *testing.T) {
	sb := s.sandbox(t, "lifecycle")
	if st, err := s.rt.State(ctx(t), sb.ID); err != nil || st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("State of a running sandbox: %+v %v", st, err)
	}
	for i := 0; i < 2; i++ { // stop and remove are idempotent
		if err := s.rt.StopSandbox(ctx(t), sb.ID); err != nil {
			t.Fatalf("StopSandbox #%d: %v", i+1, err)
		}
	}
	if st, err := s.rt.State(ctx(t), sb.ID); err != nil || st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("State of a stopped sandbox: %+v %v", st, err)
	}
	for i := 0; i < 2; i++ {
		if err := s.rt.RemoveSandbox(ctx(t), sb.ID); err != nil {
			t.Fatalf("RemoveSandbox #%d: %v", i+1, err)
		}
	}
	if _, err := s.rt.State(ctx(t), sb.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("State of a removed sandbox: %v, want ErrNotFound", err)
	}
}

func (s *suite) containerLifecycle(t *testing.T) {
	sb := s.sandbox(t, "ctr")
	id := s.container(t, sb, "sleeper", true, "sleep", "3600")
	res, err := s.rt.ExecSync(ctx(t), id, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 30*time.Second)
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Errorf("ExecSync: %q %q %d %v", res.Stdout, res.Stderr, res.ExitCode, err)
	}
	if _, err := s.rt.ExecSync(ctx(t), id, []string{"sleep", "10"}, time.Second); !errors.Is(err, backends.ErrDeadline) {
		t.Errorf("ExecSync past its timeout: %v, want ErrDeadline", err)
	}
	if _, err := s.rt.Stats(ctx(t), id); err != nil {
		t.Errorf("Stats: %v", err)
	}
	// Under Linux, sleep as PID 1 ignores SIGTERM and the stop kills it after
	// the timeout (137); gVisor's init takes the SIGTERM (143).
	for i := 0; i < 2; i++ {
		if err := s.rt.StopContainer(ctx(t), id, time.Second); err != nil {
			t.Fatalf("StopContainer #%d: %v", i+1, err)
		}
	}
	if st := s.waitExited(t, id); st.ExitCode != 137 && st.ExitCode != 143 {
		t.Errorf("exit code after a stop: %d, want 137 (SIGKILL) or 143 (SIGTERM)", st.ExitCode)
	}
	for i := 0; i < 2; i++ {
		if err := s.rt.RemoveContainer(ctx(t), id); err != nil {
			t.Fatalf("RemoveContainer #%d: %v", i+1, err)
		}
	}
	if _, err := s.rt.State(ctx(t), id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("State of a removed container: %v, want ErrNotFound", err)
	}
}

func (s *suite) exitReported(t *testing.T) {
	sb := s.sandbox(t, "exit")
	id := s.container(t, sb, "quitter", true, "sh", "-c", "exit 7")
	deadline := time.Now().Add(time.Minute)
	for {
		if st, ok := s.cfg.Recorder.Exit(id); ok {
			if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 || st.ExitedAt.IsZero() {
				t.Errorf("exit heard: %+v, want exited with 7 and a time", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Listener never heard the exit")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := s.waitExited(t, id); st.ExitCode != 7 {
		t.Errorf("State after the exit: %+v", st)
	}
}

func (s *suite) unknownIDs(t *testing.T) {
	id := newID()
	if _, err := s.rt.StartContainer(ctx(t), id); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("StartContainer of an unknown ID: %v, want ErrNotFound", err)
	}
	if _, err := s.rt.ExecSync(ctx(t), id, []string{"true"}, time.Second); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("ExecSync in an unknown container: %v, want ErrNotFound", err)
	}
	if err := s.rt.StopContainer(ctx(t), id, time.Second); err != nil {
		t.Errorf("StopContainer of an unknown ID: %v, want no error", err)
	}
	if err := s.rt.RemoveSandbox(ctx(t), id); err != nil {
		t.Errorf("RemoveSandbox of an unknown ID: %v, want no error", err)
	}
}

func (s *suite) recover(t *testing.T) {
	rec, ok := s.rt.(backends.Recoverer)
	if !ok {
		t.Skipf("handler %s's runtime has no Recoverer", s.cfg.Handler)
	}
	sb := s.sandbox(t, "recover")
	running := s.container(t, sb, "running", true, "sleep", "3600")
	created := s.container(t, sb, "created", false, "sleep", "3600")
	gone := newID()
	states, failed := rec.Recover(ctx(t), []backends.Sandbox{sb}, []backends.Container{{ID: running}, {ID: created}, {ID: gone}})
	want := map[string]runtime.ContainerState{
		sb.ID:   runtime.ContainerState_CONTAINER_RUNNING,
		running: runtime.ContainerState_CONTAINER_RUNNING,
		created: runtime.ContainerState_CONTAINER_CREATED,
	}
	for id, w := range want {
		if st := states[id]; st.State != w || failed[id] != nil {
			t.Errorf("Recover: %s is %v (%v), want %v", id[:12], st.State, failed[id], w)
		}
	}
	if err := failed[gone]; !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Recover of an unknown ID: %v, want ErrNotFound", err)
	}
	// A recovered container can still be exec'd into.
	if res, err := s.rt.ExecSync(ctx(t), running, []string{"echo", "alive"}, 30*time.Second); err != nil || string(res.Stdout) != "alive\n" {
		t.Errorf("ExecSync after Recover: %q %v", res.Stdout, err)
	}
}
