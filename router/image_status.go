package router

import (
	"context"
	"encoding/json"
	"errors"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/image"
)

// ImageStatus returns an image, or no image (not an error) when it is absent.
func (r *Router) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	img, err := r.images.Status(ctx, req.GetImage())
	if errors.Is(err, image.ErrNotFound) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: r.images.ToCRI(img)}
	if req.Verbose {
		info, _ := json.Marshal(map[string]any{"id": img.ID, "user": img.User, "size": img.Size})
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}
