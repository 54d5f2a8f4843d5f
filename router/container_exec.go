package router

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

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
	c, rt, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if rs, ok := rt.(backends.RemoteStreamer); ok {
		cp := proto.Clone(req).(*runtime.ExecRequest)
		cp.ContainerId = c.ID
		url, err := rs.ExecURL(ctx, cp)
		if err != nil {
			return nil, err
		}
		return &runtime.ExecResponse{Url: url}, nil
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.ExecRequest)
	cp.ContainerId = c.ID
	return s.GetExec(cp)
}
