package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamContainerStats is ListContainerStats in chunks.
func (r *Router) StreamContainerStats(req *runtime.StreamContainerStatsRequest, s grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	resp, err := r.ListContainerStats(s.Context(), &runtime.ListContainerStatsRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return chunks(resp.Stats, func(c []*runtime.ContainerStats) error {
		return s.Send(&runtime.StreamContainerStatsResponse{ContainerStats: c})
	})
}
