package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fsroot"
)

// maxLogLine is the longest log line written as one entry; longer lines are
// split into partial (P) entries, as the CRI log format allows.
const maxLogLine = 16 * 1024

// containerIO owns a container's stdio while crimux runs: it writes stdout and
// stderr to the CRI log file and to attached clients, and feeds stdin.
type containerIO struct {
	logPath logPath

	mu       sync.Mutex // guards log, attached, nextID, closed
	log      *os.File
	attached map[int]attachment
	nextID   int
	closed   bool

	stdout, stderr *lineWriter
	// stdin is fed by attach sessions; nil when the container has no stdin.
	stdinR    *io.PipeReader
	stdinW    *io.PipeWriter
	stdinOnce bool
	stdinMu   sync.Mutex // serialises attach sessions writing stdin
	// stdinFeed carries what stdinR reads (feedStdin) to the connected
	// task IO that takes it; closed at stdin's end. stdinDone ends
	// feedStdin's wait for a taker (Close).
	stdinFeed chan []byte
	stdinDone chan struct{}
	stdinEnd  sync.Once // closes stdinDone
}

type attachment struct {
	stdout, stderr io.Writer
}

// logPath is a container's CRI log file: rel beneath the pod's log dir.
type logPath struct{ dir, rel string }

// logOf reads a container's log path from its labels.
func logOf(labels map[string]string) logPath {
	p := labels[labelLogPath]
	if labels[labelLogDir] == "" && filepath.IsAbs(p) {
		// Recorded before the log dir had a label of its own.
		return logPath{dir: filepath.Dir(p), rel: filepath.Base(p)}
	}
	return logPath{dir: labels[labelLogDir], rel: p}
}

func newContainerIO(logPath logPath, stdin, stdinOnce bool) (*containerIO, error) {
	c := &containerIO{logPath: logPath, attached: map[int]attachment{}, stdinOnce: stdinOnce}
	if err := c.openLog(); err != nil {
		return nil, err
	}
	c.stdout = &lineWriter{c: c, stream: "stdout"}
	c.stderr = &lineWriter{c: c, stream: "stderr"}
	if stdin {
		c.stdinR, c.stdinW = io.Pipe()
		c.stdinFeed, c.stdinDone = make(chan []byte), make(chan struct{})
		go c.feedStdin()
	}
	return c, nil
}

// feedStdin hands what the attach sessions write to stdin, a read at a
// time, to whichever connected task IO takes it (stdinReader). A task's
// stdio can be connected more than once (a task created before a restart
// is first given new fifos, closed when the task turns out to exist, and
// then attached to the old ones): a closed connection stops taking, so
// what is written after it goes to the live one. With one reader of the
// pipe for all connections, none can be left blocked on it to swallow
// the next write.
func (c *containerIO) feedStdin() {
	defer close(c.stdinFeed)
	buf := make([]byte, streamBufSize)
	for {
		n, err := c.stdinR.Read(buf)
		if n > 0 {
			select {
			case c.stdinFeed <- bytes.Clone(buf[:n]):
			case <-c.stdinDone:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stdinTaker reads stdin from feedStdin until its connection is done.
type stdinTaker struct {
	feed <-chan []byte
	done <-chan struct{}
	rest []byte
}

func (r *stdinTaker) Read(p []byte) (int, error) {
	if len(r.rest) == 0 {
		select {
		case b, ok := <-r.feed:
			if !ok {
				return 0, io.EOF
			}
			r.rest = b
		case <-r.done:
			return 0, io.EOF
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// openLog opens the log file beneath the pod's log dir (which the kubelet
// chose and crimux creates when missing) without following a symlink on the
// way: a link planted in the pod's log dir never makes crimux write elsewhere.
func (c *containerIO) openLog() error {
	if c.logPath.rel == "" {
		return nil
	}
	if !filepath.IsAbs(c.logPath.dir) {
		return fmt.Errorf("%w: container log dir %q is not absolute", backends.ErrInvalid, c.logPath.dir)
	}
	if err := os.MkdirAll(c.logPath.dir, 0o755); err != nil {
		return fmt.Errorf("create log dir %q: %w", c.logPath.dir, err)
	}
	f, err := fsroot.OpenBeneath(c.logPath.dir, c.logPath.rel, unix.O_CREAT|unix.O_WRONLY|unix.O_APPEND, 0o640, true)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, fsroot.ErrEscape) {
			return fmt.Errorf("%w: container log %q in %q goes through a symlink or leaves the log dir: %v", backends.ErrInvalid, c.logPath.rel, c.logPath.dir, err)
		}
		return fmt.Errorf("open container log %q in %q: %w", c.logPath.rel, c.logPath.dir, err)
	}
	c.log = f
	return nil
}

// stdinReader is what a connection of the task's stdin fifo is fed from
// until done is closed (nil for no stdin).
func (c *containerIO) stdinReader(done <-chan struct{}) io.Reader {
	if c.stdinFeed == nil {
		return nil
	}
	return &stdinTaker{feed: c.stdinFeed, done: done}
}

// Reopen closes the log file and opens log_path again, after the kubelet rotated it.
func (c *containerIO) Reopen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("container is not running")
	}
	if c.log != nil {
		c.log.Close()
		c.log = nil
	}
	return c.openLog()
}

// Close flushes partial lines and closes the log; called once the task's IO ended.
func (c *containerIO) Close() {
	c.stdout.flush()
	c.stderr.flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.log != nil {
		c.log.Close()
		c.log = nil
	}
	for id, a := range c.attached {
		closeIf(a.stdout)
		closeIf(a.stderr)
		delete(c.attached, id)
	}
	if c.stdinW != nil {
		c.stdinW.Close()
		c.stdinEnd.Do(func() { close(c.stdinDone) })
	}
}

func closeIf(w io.Writer) {
	if wc, ok := w.(io.Closer); ok && w != nil {
		wc.Close()
	}
}

// attach adds output writers and returns a function that removes them.
func (c *containerIO) attach(stdout, stderr io.Writer) (func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return func() {}, false
	}
	id := c.nextID
	c.nextID++
	c.attached[id] = attachment{stdout: stdout, stderr: stderr}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.attached, id)
	}, true
}

// writeLog writes one CRI log entry: "<RFC3339Nano> <stream> <F|P> <line>\n".
func (c *containerIO) writeLog(stream string, partial bool, line []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.WriteString(time.Now().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(line)
	b.WriteByte('\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log != nil {
		_, _ = c.log.Write(b.Bytes())
	}
}

func (c *containerIO) forward(stream string, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, a := range c.attached {
		w := a.stdout
		if stream == "stderr" && a.stderr != nil {
			w = a.stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			delete(c.attached, id)
		}
	}
}

// lineWriter splits one stream into log lines.
type lineWriter struct {
	c      *containerIO
	stream string

	mu  sync.Mutex // guards buf
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.c.forward(w.stream, p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := w.buf[:i]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		w.c.writeLog(w.stream, false, line)
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLogLine {
		w.c.writeLog(w.stream, true, w.buf[:maxLogLine])
		w.buf = w.buf[maxLogLine:]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// flush writes what is left when the stream ends: a last line without a
// newline is a partial (P) entry, as containerd's CRI writes it, so that
// readers (the kubelet's termination message) don't add a newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.c.writeLog(w.stream, true, w.buf)
		w.buf = nil
	}
}
