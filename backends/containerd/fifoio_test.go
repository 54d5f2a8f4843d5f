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
	s := fifoStreams{stdin: stdinR, stdout: &stdout, stderr: &stderr}
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
