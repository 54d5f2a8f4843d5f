package router

import (
	"context"
	"errors"
	"fmt"
	"os"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/sandbox"
)

// RemovePodSandbox removes the pod, its containers and everything they held.
// Removing a missing sandbox succeeds.
func (r *Router) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := r.lockPod(sb.ID)
	defer unlock()
	if _, err := r.sandboxes.Get(sb.ID); errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.RemovePodSandboxResponse{}, nil // removed while we waited
	}
	rt := r.runtimeOf(sb)
	for _, c := range r.containersOf(sb.ID) {
		if err := r.removeContainerOf(ctx, sb, c); err != nil {
			return nil, fmt.Errorf("remove container %s of pod %s: %w", c.ID, sb.ID, err)
		}
	}
	fault.Point("remove-sandbox/after-containers")
	if err := r.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	fault.Point("remove-sandbox/after-runtime")
	if err := os.RemoveAll(r.podDir(sb.ID)); err != nil {
		return nil, fmt.Errorf("remove pod dir: %w", err)
	}
	if err := r.ckpt.DeleteSandbox(sb); err != nil {
		return nil, err
	}
	r.sandboxes.Delete(sb.ID)
	r.sandboxNames.Release(sb.Name, sb.ID)
	return &runtime.RemovePodSandboxResponse{}, nil
}
