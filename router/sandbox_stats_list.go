package router

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// ListPodSandboxStats reports the resource use of ready pods matching the filter.
func (r *Router) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	var sel []*sandbox.Sandbox
	for _, sb := range r.sandboxes.List() {
		if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		if f != nil && (f.Id != "" && !strings.HasPrefix(sb.ID, f.Id) || !matchLabels(f.LabelSelector, sb.Config.Labels)) {
			continue
		}
		sel = append(sel, sb)
	}
	out := &runtime.ListPodSandboxStatsResponse{}
	ctrs := r.containersByPod()
	out.Stats = gatherStats(sel, func(sb *sandbox.Sandbox) *runtime.PodSandboxStats {
		st, err := r.podStats(ctx, sb, ctrs[sb.ID])
		if err != nil {
			r.log.Debug("pod stats", "id", sb.ID, "error", err)
		}
		return st
	})
	return out, nil
}
