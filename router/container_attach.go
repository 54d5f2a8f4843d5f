package router

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// Attach returns a streaming URL for attaching to a running container.
func (r *Router) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if !req.Stdout && !req.Stderr && !req.Stdin {
		return nil, fmt.Errorf("%w: one of stdin, stdout and stderr must be set", errInvalid)
	}
	c, rt, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if rs, ok := rt.(backends.RemoteStreamer); ok {
		cp := proto.Clone(req).(*runtime.AttachRequest)
		cp.ContainerId = c.ID
		url, err := rs.AttachURL(ctx, cp)
		if err != nil {
			return nil, err
		}
		return &runtime.AttachResponse{Url: url}, nil
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.AttachRequest)
	cp.ContainerId = c.ID
	return s.GetAttach(cp)
}
