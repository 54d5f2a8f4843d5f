package router

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandboxStats reports the resource use of ready pods matching the filter.
func (r *Router) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	out := &runtime.ListPodSandboxStatsResponse{}
	f := req.GetFilter()
	for _, sb := range r.sandboxes.List() {
		if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		if f != nil && (f.Id != "" && !strings.HasPrefix(sb.ID, f.Id) || !matchLabels(f.LabelSelector, sb.Config.Labels)) {
			continue
		}
		st, err := r.podStats(ctx, sb)
		if err != nil {
			r.log.Debug("pod stats", "id", sb.ID, "error", err)
			continue
		}
		out.Stats = append(out.Stats, st)
	}
	return out, nil
}
