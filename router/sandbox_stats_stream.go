package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxStats is ListPodSandboxStats in chunks.
func (r *Router) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, s grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	resp, err := r.ListPodSandboxStats(s.Context(), &runtime.ListPodSandboxStatsRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return chunks(resp.Stats, func(c []*runtime.PodSandboxStats) error {
		return s.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: c})
	})
}
