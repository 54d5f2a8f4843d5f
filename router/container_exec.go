package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// ExecSync runs a command in a running container and returns its output.
func (r *Router) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if err := validateCommand(req.Cmd); err != nil {
		return nil, err
	}
	c, rt, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	res, err := rt.ExecSync(ctx, c.ID, req.Cmd, time.Duration(req.Timeout)*time.Second)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.ID, err)
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

func (r *Router) streamingServer() (streaming.Server, error) {
	if r.stream == nil {
		return nil, fmt.Errorf("%w: the streaming server is not running", backends.ErrPrecondition)
	}
	return r.stream, nil
}

// Exec returns a streaming URL for an interactive exec.
func (r *Router) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if err := validateCommand(req.Cmd); err != nil {
		return nil, err
	}
	if !req.Stdout && !req.Stderr && !req.Stdin {
		return nil, fmt.Errorf("%w: one of stdin, stdout and stderr must be set", errInvalid)
	}
	if req.Tty && req.Stderr {
		return nil, fmt.Errorf("%w: tty and stderr can't both be set", errInvalid)
	}
	c, _, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.ExecRequest)
	cp.ContainerId = c.ID
	return s.GetExec(cp)
}

// Attach returns a streaming URL for attaching to a running container.
func (r *Router) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if !req.Stdout && !req.Stderr && !req.Stdin {
		return nil, fmt.Errorf("%w: one of stdin, stdout and stderr must be set", errInvalid)
	}
	c, _, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.AttachRequest)
	cp.ContainerId = c.ID
	return s.GetAttach(cp)
}

// PortForward returns a streaming URL for forwarding ports of a ready pod.
func (r *Router) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("%w: pod sandbox %s is not ready", backends.ErrPrecondition, sb.ID)
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.PortForwardRequest)
	cp.PodSandboxId = sb.ID
	return s.GetPortForward(cp)
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
		return pf.PortForward(ctx, sb.ID, port, stream)
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
