package router

import (
	"context"
	"fmt"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

func (r *Router) stats(ctx context.Context, c *sandbox.Container) (*runtime.ContainerStats, error) {
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox of container %s: %w", c.ID, err)
	}
	st, err := r.runtimeOf(sb).Stats(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	st.Attributes = &runtime.ContainerAttributes{Id: c.ID, Metadata: c.Config.Metadata, Labels: c.Config.Labels, Annotations: c.Config.Annotations}
	if st.WritableLayer != nil && st.WritableLayer.FsId == nil {
		st.WritableLayer.FsId = &runtime.FilesystemIdentifier{Mountpoint: r.cfg.RootDir}
	}
	return st, nil
}

// ContainerStats reports one container's resource use.
func (r *Router) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := r.stats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

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
