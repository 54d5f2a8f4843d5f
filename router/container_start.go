package router

import (
	"context"
	"fmt"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/sandbox"
)

// StartContainer starts a created container.
func (r *Router) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	c, err := r.containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	unlockPod := r.lockPod(c.SandboxID)
	defer unlockPod()
	unlock := r.lockContainer(c.ID)
	defer unlock()
	if _, err := r.containers.Get(c.ID); err != nil {
		return nil, err // removed while we waited
	}
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox of container %s: %w", c.ID, err)
	}
	if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("%w: pod sandbox %s is not ready", backends.ErrPrecondition, sb.ID)
	}
	// The start time is taken before the process starts: its exit, which
	// containerd timestamps, can't come before it.
	startedAt := time.Now().UnixNano()
	if err := c.Update(func(s sandbox.ContainerStatus) (sandbox.ContainerStatus, error) {
		if s.State != runtime.ContainerState_CONTAINER_CREATED || s.Starting {
			return s, fmt.Errorf("%w: container %s is %s, not CREATED", backends.ErrPrecondition, c.ID, s.State)
		}
		s.Starting = true
		s.StartedAt = startedAt
		return s, nil
	}); err != nil {
		return nil, err
	}
	// The record (CREATED, with the time the start began) is written while
	// the task starts, not after it: recovery takes such a record for
	// RUNNING until the runtime says otherwise (Recover, reconcileContainer),
	// so a started container needs no second write, and the time it
	// started survives a crash. It is on disk before the call returns.
	saved := make(chan struct{})
	go func() {
		defer close(saved)
		r.saveContainer(c)
	}()
	ts, err := r.runtimeOf(sb).StartContainer(ctx, c.ID)
	<-saved
	if err == nil {
		fault.Point("start-container/after-start")
	}
	if err != nil {
		_ = c.Update(func(s sandbox.ContainerStatus) (sandbox.ContainerStatus, error) {
			s.Starting = false
			s.State = runtime.ContainerState_CONTAINER_EXITED
			now := time.Now().UnixNano()
			s.StartedAt, s.FinishedAt = now, now
			s.ExitCode = 128
			s.Reason = "StartError"
			s.Message = err.Error()
			return s, nil
		})
		r.saveContainer(c)
		return nil, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	_ = c.Update(func(s sandbox.ContainerStatus) (sandbox.ContainerStatus, error) {
		s.Starting = false
		if s.State == runtime.ContainerState_CONTAINER_CREATED {
			s.State = runtime.ContainerState_CONTAINER_RUNNING
			s.Pid = ts.Pid
		}
		if s.FinishedAt != 0 && s.FinishedAt < s.StartedAt {
			s.StartedAt = s.FinishedAt
		}
		return s, nil
	})
	r.emit(c, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtime.StartContainerResponse{}, nil
}
