package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStats reports a pod's resource use: its containers' CPU and
// memory added up, and the traffic of its network namespace.
func (r *Router) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	st, err := r.podStats(ctx, sb, r.containersOf(sb.ID))
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}
