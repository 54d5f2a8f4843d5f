package router

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamChunk is how many items one message of a streaming list carries, so
// that a node with many pods never hits the gRPC message size limit.
const streamChunk = 500

func chunks[T any](items []T, send func([]T) error) error {
	if len(items) == 0 {
		return send(nil)
	}
	for i := 0; i < len(items); i += streamChunk {
		end := min(i+streamChunk, len(items))
		if err := send(items[i:end]); err != nil {
			return err
		}
	}
	return nil
}

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
