package router

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// PortForward returns a streaming URL for forwarding ports of a ready pod.
func (r *Router) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("%w: pod sandbox %s is not ready", backends.ErrPrecondition, sb.ID)
	}
	if rs, ok := r.runtimeOf(sb).(backends.RemoteStreamer); ok {
		cp := proto.Clone(req).(*runtime.PortForwardRequest)
		cp.PodSandboxId = sb.ID
		url, err := rs.PortForwardURL(ctx, cp)
		if err != nil {
			return nil, err
		}
		return &runtime.PortForwardResponse{Url: url}, nil
	}
	s, err := r.streamingServer()
	if err != nil {
		return nil, err
	}
	cp := proto.Clone(req).(*runtime.PortForwardRequest)
	cp.PodSandboxId = sb.ID
	return s.GetPortForward(cp)
}
