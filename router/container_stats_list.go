package router

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// ListContainerStats reports the resource use of running containers matching the filter.
func (r *Router) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	var sel []*sandbox.Container
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
		sel = append(sel, c)
	}
	out := &runtime.ListContainerStatsResponse{}
	out.Stats = gatherStats(sel, func(c *sandbox.Container) *runtime.ContainerStats {
		st, err := r.stats(ctx, c)
		if err != nil {
			r.log.Debug("container stats", "id", c.ID, "error", err)
		}
		return st
	})
	return out, nil
}
