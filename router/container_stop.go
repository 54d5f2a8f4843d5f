package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// StopContainer stops a running container: its stop signal, then SIGKILL
// after the timeout. Stopping a missing or stopped container succeeds.
func (r *Router) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	// A container being started is stopped once its start finished.
	unlock := r.lockContainer(c.ID)
	defer unlock()
	if st := c.Status().State; st != runtime.ContainerState_CONTAINER_RUNNING && st != runtime.ContainerState_CONTAINER_UNKNOWN {
		return &runtime.StopContainerResponse{}, nil
	}
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox of container %s: %w", c.ID, err)
	}
	if err := r.runtimeOf(sb).StopContainer(ctx, c.ID, time.Duration(req.Timeout)*time.Second); err != nil {
		return nil, fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	return &runtime.StopContainerResponse{}, nil
}
