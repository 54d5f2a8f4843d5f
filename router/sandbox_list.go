package router

import (
	"context"
	"sort"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists sandboxes matching every filter given: id (or a unique
// prefix of it), state and labels.
func (r *Router) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	var out []*runtime.PodSandbox
	for _, sb := range r.sandboxes.List() {
		st := sb.Status()
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(sb.ID, f.Id) {
				continue
			}
			if f.State != nil && f.State.State != st.State {
				continue
			}
			if !matchLabels(f.LabelSelector, sb.Config.Labels) {
				continue
			}
		}
		out = append(out, &runtime.PodSandbox{
			Id:             sb.ID,
			Metadata:       sb.Config.Metadata,
			State:          st.State,
			CreatedAt:      sb.CreatedAt,
			Labels:         sb.Config.Labels,
			Annotations:    sb.Config.Annotations,
			RuntimeHandler: sb.Handler,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
	return &runtime.ListPodSandboxResponse{Items: out}, nil
}
