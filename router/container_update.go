package router

import (
	"context"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources changes a container's cgroup limits.
func (r *Router) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	if err := validateResources("linux", req.Linux); err != nil {
		return nil, err
	}
	c, rt, err := r.containerAndRuntime(req.ContainerId)
	if err != nil {
		return nil, err
	}
	unlock := r.lockContainer(c.ID)
	defer unlock()
	if err := rt.UpdateResources(ctx, c.ID, req.Linux); err != nil {
		return nil, fmt.Errorf("update resources of %s: %w", c.ID, err)
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}
