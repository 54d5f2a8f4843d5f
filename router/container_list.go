package router

import (
	"context"
	"sort"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers matching every filter given: id (or a
// prefix), state, pod sandbox id (or a prefix) and labels.
func (r *Router) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := req.GetFilter()
	var out []*runtime.Container
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
		out = append(out, &runtime.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     c.Config.Metadata,
			Image:        &runtime.ImageSpec{Image: c.ImageName, UserSpecifiedImage: c.Config.Image.GetImage()},
			ImageRef:     c.ImageRef,
			ImageId:      c.ImageRef,
			State:        st.State,
			CreatedAt:    c.CreatedAt,
			Labels:       c.Config.Labels,
			Annotations:  c.Config.Annotations,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
	return &runtime.ListContainersResponse{Containers: out}, nil
}
