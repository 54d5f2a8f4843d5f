package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamImages is ListImages in chunks.
func (r *Router) StreamImages(req *runtime.StreamImagesRequest, s grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	resp, err := r.ListImages(s.Context(), &runtime.ListImagesRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return chunks(resp.Images, func(c []*runtime.Image) error {
		return s.Send(&runtime.StreamImagesResponse{Images: c})
	})
}
