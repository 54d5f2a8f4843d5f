package router

import (
	"context"
	"errors"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/sandbox"
)

// StopPodSandbox stops every container of the pod and the sandbox, and
// releases the pod network. The record stays until RemovePodSandbox.
// Stopping a missing sandbox succeeds.
func (r *Router) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := r.lockPod(sb.ID)
	defer unlock()
	if _, err := r.sandboxes.Get(sb.ID); errors.Is(err, sandbox.ErrNotFound) {
		return &runtime.StopPodSandboxResponse{}, nil // removed while we waited
	}
	if err := r.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// stopSandbox stops a pod; the caller holds its lock. The pod is NOTREADY
// from the start, so nothing starts in it meanwhile, even if a step fails.
func (r *Router) stopSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	rt := r.runtimeOf(sb)
	_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.State = runtime.PodSandboxState_SANDBOX_NOTREADY
		return s, nil
	})
	for _, c := range r.containersOf(sb.ID) {
		if c.Status().State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if err := rt.StopContainer(ctx, c.ID, 0); err != nil {
			return fmt.Errorf("stop container %s of pod %s: %w", c.ID, sb.ID, err)
		}
	}
	fault.Point("stop-sandbox/after-containers")
	if err := rt.StopSandbox(ctx, sb.ID); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
	}
	fault.Point("stop-sandbox/after-pause")
	if err := sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.State = runtime.PodSandboxState_SANDBOX_NOTREADY
		s.Pid = 0
		return s, nil
	}); err != nil {
		return err
	}
	if sb.Status().NetworkReady {
		if err := r.cni.Teardown(r.cniPod(sb.Metadata)); err != nil {
			r.saveSandbox(sb)
			return fmt.Errorf("tear down network of pod %s: %w", sb.ID, err)
		}
		fault.Point("stop-sandbox/after-cni")
		_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
			s.NetworkReady = false
			return s, nil
		})
	}
	for _, p := range []string{sb.NetNSPath, sb.UsernsPath} {
		if err := sandbox.RemoveNetNS(p); err != nil {
			r.saveSandbox(sb)
			return err
		}
	}
	r.saveSandbox(sb)
	return nil
}
