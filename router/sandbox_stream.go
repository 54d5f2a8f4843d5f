package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxes is ListPodSandbox in chunks.
func (r *Router) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, s grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	resp, err := r.ListPodSandbox(s.Context(), &runtime.ListPodSandboxRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return chunks(resp.Items, func(c []*runtime.PodSandbox) error {
		return s.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: c})
	})
}
