package router

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainerStats reports the resource use of running containers matching the filter.
func (r *Router) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	out := &runtime.ListContainerStatsResponse{}
	for _, c := range r.containers.List() {
		if c.Status().State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(c.ID, f.Id) {
				continue
			}
			if f.PodSandboxId != "" && !strings.HasPrefix(c.SandboxID, f.PodSandboxId) {
				continue
			}
			if !matchLabels(f.LabelSelector, c.Config.Labels) {
				continue
			}
		}
		st, err := r.stats(ctx, c)
		if err != nil {
			r.log.Debug("container stats", "id", c.ID, "error", err)
			continue
		}
		out.Stats = append(out.Stats, st)
	}
	return out, nil
}
