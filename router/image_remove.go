package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes every name of an image; removing a missing one
// succeeds. Containers made from it keep their own snapshots.
func (r *Router) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	if err := r.images.Remove(ctx, req.GetImage()); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}
