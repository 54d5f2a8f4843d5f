package router

import (
	"context"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

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
