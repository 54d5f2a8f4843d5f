package router

import (
	"context"
	"errors"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// RemoveContainer removes a container, killing it if it runs. Removing a
// missing container succeeds.
func (r *Router) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := r.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func (r *Router) removeContainer(ctx context.Context, c *sandbox.Container) error {
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err == nil {
		if err := r.runtimeOf(sb).RemoveContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if err := r.ckpt.DeleteContainer(c.ID); err != nil {
		return err
	}
	r.containers.Delete(c.ID)
	r.containerNames.Release(c.Name, c.ID)
	r.emit(c, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}
