package router

import (
	"cmp"
	"context"
	"slices"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// ListContainers lists containers matching every filter given: id (or a
// prefix), state, pod sandbox id (or a prefix) and labels.
func (r *Router) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	ls := r.listContainers(req.GetFilter())
	out := make([]*runtime.Container, len(ls))
	for i, l := range ls {
		out[i] = containerItem(l.c, l.state)
	}
	return &runtime.ListContainersResponse{Containers: out}, nil
}

// listedContainer is a container a list selected, with its state then.
type listedContainer struct {
	c     *sandbox.Container
	state runtime.ContainerState
}

// listContainers selects the containers a ListContainers filter matches,
// newest first.
func (r *Router) listContainers(f *runtime.ContainerFilter) []listedContainer {
	var out []listedContainer
	for _, c := range r.containers.List() {
		st := c.Status()
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(c.ID, f.Id) {
				continue
			}
			if f.State != nil && f.State.State != st.State {
				continue
			}
			if f.PodSandboxId != "" && !strings.HasPrefix(c.SandboxID, f.PodSandboxId) {
				continue
			}
			if !matchLabels(f.LabelSelector, c.Config.Labels) {
				continue
			}
		}
		out = append(out, listedContainer{c, st.State})
	}
	slices.SortFunc(out, func(a, b listedContainer) int { return cmp.Compare(b.c.CreatedAt, a.c.CreatedAt) })
	return out
}

// containerItem is a container as a list item in the given state.
func containerItem(c *sandbox.Container, state runtime.ContainerState) *runtime.Container {
	return &runtime.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     c.Config.Metadata,
		Image:        &runtime.ImageSpec{Image: c.ImageName, UserSpecifiedImage: c.Config.Image.GetImage()},
		ImageRef:     c.ImageRef,
		ImageId:      c.ImageRef,
		State:        state,
		CreatedAt:    c.CreatedAt,
		Labels:       c.Config.Labels,
		Annotations:  c.Config.Annotations,
	}
}
