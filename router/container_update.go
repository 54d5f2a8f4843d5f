package router

import (
	"context"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

func (r *Router) containerAndRuntime(id string) (*sandbox.Container, backends.Runtime, error) {
	c, err := r.containers.Get(id)
	if err != nil {
		return nil, nil, err
	}
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, nil, fmt.Errorf("pod sandbox of container %s: %w", c.ID, err)
	}
	return c, r.runtimeOf(sb), nil
}

func (r *Router) runningContainer(id string) (*sandbox.Container, backends.Runtime, error) {
	c, rt, err := r.containerAndRuntime(id)
	if err != nil {
		return nil, nil, err
	}
	if st := c.Status().State; st != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, nil, fmt.Errorf("%w: container %s is %s, not running", backends.ErrPrecondition, c.ID, st)
	}
	return c, rt, nil
}

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

// ReopenContainerLog makes a running container write to a fresh log file at
// its log path, after the kubelet rotated the old one.
func (r *Router) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, rt, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := rt.ReopenLog(ctx, c.ID); err != nil {
		return nil, fmt.Errorf("reopen log of %s: %w", c.ID, err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
