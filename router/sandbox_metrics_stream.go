package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxMetrics is ListPodSandboxMetrics in chunks.
func (r *Router) StreamPodSandboxMetrics(req *runtime.StreamPodSandboxMetricsRequest, s grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	resp, err := r.ListPodSandboxMetrics(s.Context(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	return chunks(resp.PodMetrics, func(c []*runtime.PodSandboxMetrics) error {
		return s.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: c})
	})
}
