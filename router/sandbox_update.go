package router

import (
	"context"
	"errors"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// UpdatePodSandboxResources takes the pod-level resources the kubelet resized
// a pod to (it has resized the pod cgroup already). Where the sandbox itself
// carries them (a gVisor sandbox's cgroup) the runtime applies them first;
// then crimux records them, and verbose PodSandboxStatus shows them.
func (r *Router) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	if req.Resources == nil && req.Overhead == nil {
		return nil, fmt.Errorf("%w: update pod sandbox %s: neither resources nor overhead given", backends.ErrInvalid, sb.ID)
	}
	if err := errors.Join(validateResources("resources", req.Resources), validateResources("overhead", req.Overhead)); err != nil {
		return nil, err
	}
	res, over := currentPodResources(sb)
	if req.Resources != nil {
		res = req.Resources
	}
	if req.Overhead != nil {
		over = req.Overhead
	}
	if rs, ok := r.runtimeOf(sb).(backends.SandboxResizer); ok && sb.Status().State == runtime.PodSandboxState_SANDBOX_READY {
		if err := rs.UpdateSandboxResources(ctx, sb.ID, &runtime.LinuxPodSandboxConfig{Resources: res, Overhead: over}); err != nil {
			return nil, fmt.Errorf("update resources of pod sandbox %s: %w", sb.ID, err)
		}
	}
	_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.PodResources, s.PodOverhead = res, over
		return s, nil
	})
	r.saveSandbox(sb)
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

// currentPodResources are a pod's current pod-level resources and overhead: the
// last update's, or its config's.
func currentPodResources(sb *sandbox.Sandbox) (res, over *runtime.LinuxContainerResources) {
	st := sb.Status()
	res, over = st.PodResources, st.PodOverhead
	if res == nil {
		res = sb.Config.GetLinux().GetResources()
	}
	if over == nil {
		over = sb.Config.GetLinux().GetOverhead()
	}
	return res, over
}
