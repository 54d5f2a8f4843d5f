package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PullImage pulls an image with the request's credentials through the
// configured registry hosts (mirrors, plain HTTP, TLS).
func (r *Router) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	spec := req.GetImage()
	if spec != nil && spec.RuntimeHandler != "" {
		if _, _, err := r.resolveHandler(spec.RuntimeHandler); err != nil {
			return nil, err
		}
	}
	id, err := r.images.Pull(ctx, spec, req.Auth)
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: id}, nil
}
