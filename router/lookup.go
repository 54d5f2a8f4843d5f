package router

import (
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// containerAndRuntime finds a container and the runtime of its pod.
func (r *Router) containerAndRuntime(id string) (*sandbox.Container, backends.Runtime, error) {
	c, err := r.containers.Get(id)
	if err != nil {
		return nil, nil, err
	}
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, nil, fmt.Errorf("pod sandbox of container %s: %w", c.ID, err)
	}
	return c, r.runtimeOf(sb), nil
}

// runningContainer is containerAndRuntime for the calls that need a running
// process (exec, attach, log reopening): anything else is a precondition
// failure, not a runtime error.
func (r *Router) runningContainer(id string) (*sandbox.Container, backends.Runtime, error) {
	c, rt, err := r.containerAndRuntime(id)
	if err != nil {
		return nil, nil, err
	}
	if st := c.Status().State; st != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, nil, fmt.Errorf("%w: container %s is %s, not running", backends.ErrPrecondition, c.ID, st)
	}
	return c, rt, nil
}

// containersByPod lists every pod's containers, by pod ID: for the calls
// about every pod, which would otherwise go through all containers for
// each pod.
func (r *Router) containersByPod() map[string][]*sandbox.Container {
	out := map[string][]*sandbox.Container{}
	for _, c := range r.containers.List() {
		out[c.SandboxID] = append(out[c.SandboxID], c)
	}
	return out
}

// containersOf lists a pod's containers.
func (r *Router) containersOf(sandboxID string) []*sandbox.Container {
	return r.containers.InGroup(sandboxID)
}
