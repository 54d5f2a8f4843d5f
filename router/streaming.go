package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// streamingServer is the k8s.io/cri-streaming server whose URLs Exec, Attach
// and PortForward hand out; it calls back into StreamRuntime when the client
// connects. Until cmd/crimux sets it, those calls fail as a precondition.
func (r *Router) streamingServer() (streaming.Server, error) {
	if r.stream == nil {
		return nil, fmt.Errorf("%w: the streaming server is not running", backends.ErrPrecondition)
	}
	return r.stream, nil
}

// StreamRuntime adapts the router to the streaming server's Runtime.
type StreamRuntime struct{ r *Router }

var _ streaming.Runtime = StreamRuntime{}

// StreamRuntime returns the adapter the streaming server calls back into.
func (r *Router) StreamRuntime() StreamRuntime { return StreamRuntime{r: r} }

// Exec implements streaming.Runtime.
func (s StreamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, rt, err := s.r.runningContainer(containerID)
	if err != nil {
		return err
	}
	return rt.Exec(ctx, c.ID, cmd, backends.Streams{Stdin: in, Stdout: out, Stderr: errw, TTY: tty, Resize: resize})
}

// Attach implements streaming.Runtime.
func (s StreamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, rt, err := s.r.runningContainer(containerID)
	if err != nil {
		return err
	}
	return rt.Attach(ctx, c.ID, backends.Streams{Stdin: in, Stdout: out, Stderr: errw, TTY: tty, Resize: resize})
}

// PortForward implements streaming.Runtime: the runtime's own way if it has
// one, else a connection to localhost:port made inside the pod's netns.
func (s StreamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	sb, err := s.r.sandboxes.Get(podSandboxID)
	if err != nil {
		return err
	}
	defer stream.Close()
	if pf, ok := s.r.runtimeOf(sb).(backends.PortForwarder); ok {
		if err := pf.PortForward(ctx, sb.ID, port, stream); !errors.Is(err, backends.ErrDefault) {
			return err
		}
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%w: port %d out of range", errInvalid, port)
	}
	var conn net.Conn
	dial := func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		conn = c
		return err
	}
	if sb.NetNSPath == "" {
		err = dial()
	} else {
		err = sandbox.InNetNS(sb.NetNSPath, dial)
	}
	if err != nil {
		return fmt.Errorf("port forward to %d in pod %s: %w", port, sb.ID, err)
	}
	defer conn.Close()
	return backends.Splice(ctx, stream, conn)
}
