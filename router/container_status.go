package router

import (
	"context"
	"encoding/json"
	"sort"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// ContainerStatus answers from crimux's records, kept current by exit events.
func (r *Router) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: r.containerStatus(c)}
	if req.Verbose {
		st := c.Status()
		info, _ := json.Marshal(map[string]any{"pid": st.Pid, "sandboxID": c.SandboxID, "image": c.ImageName, "recordName": c.Name})
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func (r *Router) containerStatus(c *sandbox.Container) *runtime.ContainerStatus {
	st := c.Status()
	cfg := c.Config
	out := &runtime.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.Metadata,
		State:       st.State,
		CreatedAt:   c.CreatedAt,
		StartedAt:   startedAt(st),
		FinishedAt:  st.FinishedAt,
		ExitCode:    st.ExitCode,
		Image:       &runtime.ImageSpec{Image: c.ImageName, UserSpecifiedImage: cfg.Image.GetImage()},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageRef,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      cfg.Labels,
		Annotations: cfg.Annotations,
		LogPath:     c.LogPath,
	}
	for _, m := range cfg.Mounts {
		out.Mounts = append(out.Mounts, &runtime.Mount{
			ContainerPath: m.ContainerPath, HostPath: m.HostPath, Readonly: m.Readonly,
			Propagation: m.Propagation, SelinuxRelabel: m.SelinuxRelabel,
			RecursiveReadOnly: m.RecursiveReadOnly, Image: m.Image, ImageSubPath: m.ImageSubPath,
		})
	}
	if u := c.User; u != nil {
		groups := append([]int64(nil), u.Groups...)
		sort.Slice(groups, func(i, j int) bool { return groups[i] < groups[j] })
		out.User = &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{Uid: u.UID, Gid: u.GID, SupplementalGroups: groups}}
	}
	if res := cfg.GetLinux().GetResources(); res != nil {
		out.Resources = &runtime.ContainerResources{Linux: res}
	}
	return out
}

// startedAt is when the container started; none while it is CREATED (a
// starting container already carries the time its start began).
func startedAt(st sandbox.ContainerStatus) int64 {
	if st.State == runtime.ContainerState_CONTAINER_CREATED {
		return 0
	}
	return st.StartedAt
}
