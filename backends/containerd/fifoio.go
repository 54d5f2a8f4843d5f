package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/fifo"
)

// A container's stdio reaches crimux through fifos the shim writes (and,
// for stdin, reads); a goroutine per stream copies between a fifo and
// crimux for the container's whole life. containerd's cio gives each copy
// a 32 KiB buffer, 6 MiB held for 100 containers' stdout and stderr.
// lineWriter splits lines by itself and a fifo read returns what is there,
// so crimux copies with small buffers instead: a chatty container costs a
// few more reads, nothing else.

// streamBufSize is the buffer of one stream's copy.
const streamBufSize = 4 << 10

// fifoStreams is what a container's stdio is connected to in crimux; a
// nil stream has no fifo. stdin gives a connection its reader, which ends
// when the connection's done is closed (Cancel or Close).
type fifoStreams struct {
	stdin          func(done <-chan struct{}) io.Reader
	stdout, stderr io.Writer
	terminal       bool // stdout and stderr are one tty stream
}

// creator makes a task's fifos in dir and connects them (cio.Creator).
func (s fifoStreams) creator(dir string) cio.Creator {
	return func(id string) (cio.IO, error) {
		fifos, err := cio.NewFIFOSetInDir(dir, id, s.terminal)
		if err != nil {
			return nil, err
		}
		return s.connect(fifos)
	}
}

// attach connects the fifos of a task that already runs (cio.Attach).
func (s fifoStreams) attach() cio.Attach {
	return func(fifos *cio.FIFOSet) (cio.IO, error) {
		if fifos == nil {
			return nil, errors.New("attach to the task's stdio: it has no fifos")
		}
		return s.connect(fifos)
	}
}

// connect opens the fifos of the streams crimux has, all before any copy
// starts (a failure leaves nothing running), and starts the copies.
func (s fifoStreams) connect(fifos *cio.FIFOSet) (cio.IO, error) {
	if s.stdin == nil {
		fifos.Stdin = ""
	}
	if s.stdout == nil {
		fifos.Stdout = ""
	}
	if s.stderr == nil {
		fifos.Stderr = ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	sio := &streamIO{config: fifos.Config, fifos: fifos, cancel: cancel}
	open := func(path string, flag int) (io.ReadWriteCloser, error) {
		if path == "" {
			return nil, nil
		}
		f, err := fifo.OpenFifo(ctx, path, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			return nil, err
		}
		sio.pipes = append(sio.pipes, f)
		return f, nil
	}
	stdin, err := open(fifos.Stdin, syscall.O_WRONLY)
	var stdout, stderr io.ReadWriteCloser
	if err == nil {
		stdout, err = open(fifos.Stdout, syscall.O_RDONLY)
	}
	if err == nil && !fifos.Terminal {
		stderr, err = open(fifos.Stderr, syscall.O_RDONLY)
	}
	if err != nil {
		sio.Cancel()
		_ = sio.Close()
		return nil, fmt.Errorf("open the task's stdio fifos: %w", err)
	}
	if stdin != nil {
		in := s.stdin(ctx.Done())
		go func() {
			_, _ = io.CopyBuffer(stdin, in, make([]byte, streamBufSize))
			stdin.Close()
		}()
	}
	for _, p := range []struct {
		dst io.Writer
		src io.ReadWriteCloser
	}{{s.stdout, stdout}, {s.stderr, stderr}} {
		if p.src == nil {
			continue
		}
		sio.wg.Go(func() {
			_, _ = io.CopyBuffer(p.dst, p.src, make([]byte, streamBufSize))
			p.src.Close()
		})
	}
	return sio, nil
}

// streamIO is a connected task's stdio (cio.IO).
type streamIO struct {
	config cio.Config
	fifos  *cio.FIFOSet
	pipes  []io.Closer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *streamIO) Config() cio.Config { return s.config }

// Wait waits for stdout and stderr to be copied to their end.
func (s *streamIO) Wait() { s.wg.Wait() }

// Cancel stops opening and copying: the fifos are closed.
func (s *streamIO) Cancel() {
	s.cancel()
	for _, p := range s.pipes {
		_ = p.Close()
	}
}

// Close closes the fifos and removes them.
func (s *streamIO) Close() error {
	s.cancel()
	var errs []error
	for _, p := range s.pipes {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.fifos.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
