package router

import (
	"context"
	"fmt"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a running container and returns its output.
func (r *Router) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if err := validateCommand(req.Cmd); err != nil {
		return nil, err
	}
	c, rt, err := r.runningContainer(req.ContainerId)
	if err != nil {
		return nil, err
	}
	res, err := rt.ExecSync(ctx, c.ID, req.Cmd, time.Duration(req.Timeout)*time.Second)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.ID, err)
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}
