package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamContainers is ListContainers in chunks.
func (r *Router) StreamContainers(req *runtime.StreamContainersRequest, s grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	resp, err := r.ListContainers(s.Context(), &runtime.ListContainersRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return chunks(resp.Containers, func(c []*runtime.Container) error {
		return s.Send(&runtime.StreamContainersResponse{Containers: c})
	})
}
