package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports one container's resource use.
func (r *Router) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := r.stats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}
