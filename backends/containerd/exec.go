package containerd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/crimux/crimux/backends"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// maxExecOutput bounds what ExecSync returns of stdout and stderr together:
// the CRI's gRPC messages are at most 16 MiB, and the response needs room
// for its own fields and the truncation marker.
const maxExecOutput = 16<<20 - 64<<10

// execDrainTimeout bounds how long ExecSync reads output after the command
// exited: a child it left running (sh -c 'daemon &') can hold stdout open
// for ever (containerd's drain_exec_sync_io_timeout).
const execDrainTimeout = 2 * time.Second

func (r *Runtime) running(ctx context.Context, id string) (*proc, error) {
	p := r.d.proc(id)
	if p == nil {
		if _, err := r.d.client.LoadContainer(r.d.ctx(ctx), id); isNotFound(err) {
			return nil, fmt.Errorf("container %s: %w", id, backends.ErrNotFound)
		}
		return nil, fmt.Errorf("%w: container %s: %w", backends.ErrPrecondition, id, errNotRunning)
	}
	return p, nil
}

// outputBudget is what ExecSync may still keep of stdout and stderr together.
type outputBudget struct {
	mu   sync.Mutex // guards left
	left int
}

// take returns how many of n bytes fit.
func (b *outputBudget) take(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.left)
	b.left -= n
	return n
}

// limitedBuffer keeps what the shared budget allows of one stream, and
// says so at its end when it had to cut it.
type limitedBuffer struct {
	mu     sync.Mutex // guards buf, cut
	buf    bytes.Buffer
	budget *outputBudget
	cut    int // bytes dropped
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.budget.take(len(p))
	b.buf.Write(p[:n])
	b.cut += len(p) - n
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]byte(nil), b.buf.Bytes()...)
	if b.cut > 0 {
		out = append(out, fmt.Sprintf("\n[crimux: output cut here, %d more bytes dropped: ExecSync returns at most %d bytes of stdout and stderr together]\n", b.cut, maxExecOutput)...)
	}
	return out
}

// ExecSync implements backends.Runtime.
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (backends.ExecResult, error) {
	budget := &outputBudget{left: maxExecOutput}
	stdout := &limitedBuffer{budget: budget}
	stderr := &limitedBuffer{budget: budget}
	code, err := r.exec(ctx, id, cmd, nil, stdout, stderr, false, nil, timeout)
	if err != nil {
		return backends.ExecResult{}, err
	}
	return backends.ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// Exec implements backends.Runtime: a streaming exec session.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, s backends.Streams) error {
	var stdout, stderr io.Writer
	if s.Stdout != nil {
		stdout = s.Stdout
	}
	if s.Stderr != nil {
		stderr = s.Stderr
	}
	code, err := r.exec(ctx, id, cmd, s.Stdin, stdout, stderr, s.TTY, s.Resize, 0)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// ExitError reports a non-zero exit of an exec'd command; the streaming
// server turns it into the exit code the client sees.
type ExitError struct{ Code int32 }

func (e *ExitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.Code)
}

// String, Exited and ExitStatus make ExitError a k8s.io/utils/exec.ExitError.
func (e *ExitError) String() string { return e.Error() }

func (e *ExitError) Exited() bool { return true }

func (e *ExitError) ExitStatus() int { return int(e.Code) }

func (r *Runtime) exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer, tty bool, resize <-chan termSize, timeout time.Duration) (int32, error) {
	if len(cmd) == 0 {
		return 0, fmt.Errorf("%w: exec needs a command", backends.ErrInvalid)
	}
	p, err := r.running(ctx, id)
	if err != nil {
		return 0, err
	}
	ctx = r.d.ctx(ctx)
	pspec, err := r.execProcessSpec(ctx, id, cmd, tty)
	if err != nil {
		return 0, err
	}
	execID := "exec-" + randomID()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	// When the client's stdin ends, the exec'd process must see EOF: the shim
	// holds the stdin fifo open, so tell it with CloseIO.
	var procRef struct {
		sync.Mutex
		p client.Process
	}
	if stdin != nil {
		stdin = &eofReader{r: stdin, onEOF: func() {
			procRef.Lock()
			defer procRef.Unlock()
			if procRef.p != nil {
				_ = procRef.p.CloseIO(r.d.ctx(context.Background()), client.WithStdinCloser)
			}
		}}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(filepath.Join(r.d.opts.StateDir, "io", "exec"))}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	process, err := p.task.Exec(ctx, execID, pspec, cio.NewCreator(opts...))
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, mapErr(err))
	}
	// The exec'd process is killed (when it still runs), waited for and
	// deleted after the call returns, in the background: a shim may take its
	// time (gVisor's waits for the exec's output to close), and the caller's
	// timeout is honoured whatever it does.
	var ch <-chan client.ExitStatus
	defer func() { go r.reapExec(process, ch, id, execID) }()
	ch, err = process.Wait(r.d.ctx(context.Background()))
	if err != nil {
		return 0, mapErr(err)
	}
	if err := process.Start(ctx); err != nil {
		return 0, fmt.Errorf("start exec in %s: %w", id, mapErr(err))
	}
	procRef.Lock()
	procRef.p = process
	procRef.Unlock()
	if resize != nil {
		go func() {
			for sz := range resize {
				_ = process.Resize(r.d.ctx(context.Background()), uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	return r.waitExec(ctx, process, ch, cmd, tty || stdin != nil, timeout)
}

// execProcessSpec is an exec's process: the container's, running cmd.
func (r *Runtime) execProcessSpec(ctx context.Context, id string, cmd []string, tty bool) (*specs.Process, error) {
	cont, err := r.d.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, mapErr(err)
	}
	spec, err := cont.Spec(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = tty
	pspec.ConsoleSize = nil
	if tty {
		pspec.Env = appendTerm(pspec.Env)
	}
	return &pspec, nil
}

// waitExec waits for an exec'd process's exit and its output; an
// interactive one's output until it ends, another's for a bounded time
// (a child it left may hold it for ever), all within the timeout.
func (r *Runtime) waitExec(ctx context.Context, process client.Process, ch <-chan client.ExitStatus, cmd []string, interactive bool, timeout time.Duration) (int32, error) {
	var timer <-chan time.Time
	deadline := time.Now().Add(execDrainTimeout)
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
		deadline = time.Now().Add(timeout)
	}
	select {
	case st := <-ch:
		code, _, err := st.Result()
		if err != nil {
			return 0, err
		}
		// Let the output drain before the caller reads it, for a bounded
		// time: a child the command left may hold its stdout for ever.
		if pio := process.IO(); pio != nil && !interactive {
			drained := make(chan struct{})
			go func() { pio.Wait(); close(drained) }()
			drain := time.NewTimer(min(execDrainTimeout, max(time.Until(deadline), 0)))
			defer drain.Stop()
			select {
			case <-drained:
			case <-drain.C:
				pio.Cancel()
				_ = pio.Close()
			case <-timer:
				pio.Cancel()
				_ = pio.Close()
			case <-ctx.Done():
				pio.Cancel()
				_ = pio.Close()
			}
		} else if pio != nil {
			pio.Wait()
		}
		return int32(code), nil
	case <-timer:
		return 0, fmt.Errorf("%w: command %q timed out after %s", errDeadline, cmd, timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// reapExec kills an exec'd process that may still run, waits (bounded) for
// its exit, and deletes it with its fifos.
func (r *Runtime) reapExec(process client.Process, ch <-chan client.ExitStatus, id, execID string) {
	ctx, cancel := r.d.cleanupCtx()
	defer cancel()
	if ch != nil {
		select {
		case <-ch:
		default:
			_ = process.Kill(ctx, syscall.SIGKILL)
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
	if pio := process.IO(); pio != nil {
		pio.Cancel()
		_ = pio.Close()
	}
	if _, err := process.Delete(ctx); err != nil && !isNotFound(err) {
		r.d.log.Warn("delete exec process", "id", id, "exec", execID, "error", err)
	}
}

// eofReader calls onEOF once when its reader ends.
type eofReader struct {
	r     io.Reader
	once  sync.Once
	onEOF func()
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(e.onEOF)
	}
	return n, err
}

func appendTerm(env []string) []string {
	for _, e := range env {
		if len(e) > 5 && e[:5] == "TERM=" {
			return env
		}
	}
	return append(env, "TERM=xterm")
}

// Attach implements backends.Runtime: it streams the container's output and
// feeds its stdin until the container exits or the client goes away.
func (r *Runtime) Attach(ctx context.Context, id string, s backends.Streams) error {
	p, err := r.running(ctx, id)
	if err != nil {
		return err
	}
	if p.io == nil {
		return fmt.Errorf("%w: %s has no attachable IO", backends.ErrPrecondition, id)
	}
	var stdout, stderr io.Writer
	if s.Stdout != nil {
		stdout = s.Stdout
	}
	if s.Stderr != nil {
		stderr = s.Stderr
	}
	remove, ok := p.io.attach(stdout, stderr)
	if !ok {
		return fmt.Errorf("%w: container %s: %w", backends.ErrPrecondition, id, errNotRunning)
	}
	defer remove()
	stdinDone := make(chan struct{})
	if s.Stdin != nil && p.io.stdinW != nil {
		go func() {
			defer close(stdinDone)
			p.io.stdinMu.Lock()
			defer p.io.stdinMu.Unlock()
			_, _ = io.Copy(p.io.stdinW, s.Stdin)
			if p.io.stdinOnce {
				p.io.stdinW.Close()
				// The shim keeps the stdin fifo open; only CloseIO gives the
				// container's process its EOF.
				if err := p.task.CloseIO(r.d.ctx(context.Background()), client.WithStdinCloser); err != nil && !isNotFound(err) {
					r.d.log.Warn("close container stdin", "id", id, "error", err)
				}
			}
		}()
	}
	if s.Resize != nil {
		go func() {
			for sz := range s.Resize {
				_ = p.task.Resize(r.d.ctx(context.Background()), uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	var stdinEnded <-chan struct{}
	if s.Stdin != nil && p.io.stdinW != nil {
		stdinEnded = stdinDone
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	case <-stdinEnded:
		// The client closed its stdin. With stdin_once the container's stdin
		// closed too, and the session lasts until the container's output ends;
		// otherwise the session ends here and the container keeps its stdin.
		if p.io.stdinOnce {
			select {
			case <-p.done:
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// ReopenLog implements backends.Runtime.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	p, err := r.running(ctx, id)
	if err != nil {
		return err
	}
	if p.io == nil {
		return fmt.Errorf("%w: %s has no log", backends.ErrPrecondition, id)
	}
	return p.io.Reopen()
}
