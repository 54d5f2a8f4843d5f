package containerd

import (
	"bytes"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
)

// syncBuffer is a bytes.Buffer safe for a copy goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// What the task writes to its stdout and stderr fifos reaches crimux's
// writers whole (more than a copy buffer at once too), what crimux feeds
// stdin reaches the task's stdin fifo, Wait returns once the task's side
// is closed, and Close removes the fifos.
func TestFIFOStreams(t *testing.T) {
	dir := t.TempDir()
	stdinR, stdinW := io.Pipe()
	var stdout, stderr syncBuffer
	s := fifoStreams{stdin: func(<-chan struct{}) io.Reader { return stdinR }, stdout: &stdout, stderr: &stderr}
	sio, err := s.creator(dir)("c1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := sio.Config()
	if cfg.Stdin == "" || cfg.Stdout == "" || cfg.Stderr == "" || cfg.Terminal {
		t.Fatalf("config %+v", cfg)
	}
	// The task's side, as the shim opens it.
	open := func(p string, flag int) io.ReadWriteCloser {
		t.Helper()
		f, err := fifo.OpenFifo(t.Context(), p, flag|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	taskOut, taskErr, taskIn := open(cfg.Stdout, syscall.O_WRONLY), open(cfg.Stderr, syscall.O_WRONLY), open(cfg.Stdin, syscall.O_RDONLY)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*streamBufSize/16+5)
	if _, err := taskOut.Write(big); err != nil {
		t.Fatal(err)
	}
	if _, err := taskErr.Write([]byte("oops\n")); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = stdinW.Write([]byte("input\n")) }()
	got := make([]byte, 6)
	if _, err := io.ReadFull(taskIn, got); err != nil || string(got) != "input\n" {
		t.Errorf("stdin fifo read %q, %v", got, err)
	}
	taskOut.Close()
	taskErr.Close()
	done := make(chan struct{})
	go func() { sio.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the task's side closed")
	}
	if stdout.String() != string(big) || stderr.String() != "oops\n" {
		t.Errorf("stdout %d bytes (want %d), stderr %q", len(stdout.String()), len(big), stderr.String())
	}
	taskIn.Close()
	stdinW.Close()
	if err := sio.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Stdout); !os.IsNotExist(err) {
		t.Errorf("fifo left after Close: %v", err)
	}

	// A tty has no stderr fifo; a container without stdin no stdin fifo.
	tty, err := fifoStreams{stdout: &stdout, stderr: &stderr, terminal: true}.creator(dir)("c2")
	if err != nil {
		t.Fatal(err)
	}
	if c := tty.Config(); c.Stdin != "" || !c.Terminal {
		t.Errorf("tty config %+v", c)
	}
	tty.Cancel()
	_ = tty.Close()
}

// A task taken over after a restart gets its stdio connected twice: first
// through the fifos made for a new task (its IO closed when the task turns
// out to exist), then through the old task's. What an attach session
// writes to stdin after that reaches the task: the closed IO takes none
// of it.
func TestStdinReachesTheTaskAfterAClosedIO(t *testing.T) {
	c, err := newContainerIO(logPath{}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	first, err := c.streams(false).creator(dir)("new")
	if err != nil {
		t.Fatal(err)
	}
	first.Cancel()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := c.streams(false).creator(dir)("old")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	taskIn, err := fifo.OpenFifo(t.Context(), second.Config().Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer taskIn.Close()
	go func() { _, _ = c.stdinW.Write([]byte("hello\n")) }()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 6)
		n, _ := io.ReadFull(taskIn, b)
		got <- string(b[:n])
	}()
	select {
	case s := <-got:
		if s != "hello\n" {
			t.Errorf("the task's stdin read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("what was written to stdin never reached the task: the closed IO took it")
	}
}

// Closing a container's IO twice (a failed start, then its cleanup) is
// fine.
func TestContainerIOClosesTwice(t *testing.T) {
	c, err := newContainerIO(logPath{}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
}
