package router

import (
	"cmp"
	"context"
	"slices"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// ListPodSandbox lists sandboxes matching every filter given: id (or a unique
// prefix of it), state and labels.
func (r *Router) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	ls := r.listSandboxes(req.GetFilter())
	out := make([]*runtime.PodSandbox, len(ls))
	for i, l := range ls {
		out[i] = sandboxItem(l.sb, l.state)
	}
	return &runtime.ListPodSandboxResponse{Items: out}, nil
}

// listedSandbox is a sandbox a list selected, with its state then.
type listedSandbox struct {
	sb    *sandbox.Sandbox
	state runtime.PodSandboxState
}

// listSandboxes selects the sandboxes a ListPodSandbox filter matches,
// newest first.
func (r *Router) listSandboxes(f *runtime.PodSandboxFilter) []listedSandbox {
	var out []listedSandbox
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
		out = append(out, listedSandbox{sb, st.State})
	}
	slices.SortFunc(out, func(a, b listedSandbox) int { return cmp.Compare(b.sb.CreatedAt, a.sb.CreatedAt) })
	return out
}

// sandboxItem is a sandbox as a list item in the given state.
func sandboxItem(sb *sandbox.Sandbox, state runtime.PodSandboxState) *runtime.PodSandbox {
	return &runtime.PodSandbox{
		Id:             sb.ID,
		Metadata:       sb.Config.Metadata,
		State:          state,
		CreatedAt:      sb.CreatedAt,
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Handler,
	}
}
