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
	unlock := r.lockPod(c.SandboxID)
	defer unlock()
	sb, err := r.sandboxes.Get(c.SandboxID)
	if errors.Is(err, sandbox.ErrNotFound) {
		sb = nil // a container whose pod record is gone (quarantined): only its record
	} else if err != nil {
		return nil, err
	}
	if err := r.removeContainerOf(ctx, sb, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

// removeContainerOf removes a container of sb (nil: a pod crimux has no
// record of); the caller holds the pod's lock.
func (r *Router) removeContainerOf(ctx context.Context, sb *sandbox.Sandbox, c *sandbox.Container) error {
	unlock := r.lockContainer(c.ID)
	defer unlock()
	if _, err := r.containers.Get(c.ID); errors.Is(err, sandbox.ErrNotFound) {
		return nil // removed while we waited
	}
	if sb != nil {
		if err := r.runtimeOf(sb).RemoveContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if err := r.ckpt.DeleteContainer(c); err != nil {
		return err
	}
	r.containers.Delete(c.ID)
	r.containerNames.Release(c.Name, c.ID)
	r.emit(c, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}
