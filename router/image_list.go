package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists images, optionally only one reference.
func (r *Router) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	imgs, err := r.images.List(ctx, req.Filter)
	if err != nil {
		return nil, err
	}
	out := &runtime.ListImagesResponse{}
	for _, img := range imgs {
		out.Images = append(out.Images, r.images.ToCRI(img))
	}
	return out, nil
}
