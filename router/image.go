package router

import (
	"context"
	"encoding/json"
	"errors"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/image"
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

// RemoveImage removes every name of an image; removing a missing one
// succeeds. Containers made from it keep their own snapshots.
func (r *Router) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	if err := r.images.Remove(ctx, req.GetImage()); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

// ImageFsInfo reports where images live and what they use.
func (r *Router) ImageFsInfo(ctx context.Context, req *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	fs, err := r.images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: fs}, nil
}
