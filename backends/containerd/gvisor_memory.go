package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// A gVisor sandbox is one host process tree: the host kernel can only limit
// the whole sandbox (crimux puts the pod's resources on its cgroup), and the
// sentry keeps per-container accounts but enforces no per-container limit
// (its memory cgroup files are stubs). So crimux enforces a container's own
// memory limit itself: every memory_limit_check it samples the container's
// working set from the shim and, once it reaches the limit, reports an OOM
// and kills the container, as the kernel's OOM killer would under runc. A
// sample is a `runsc events --stats` run by the shim, so only containers
// with a limit are watched, and a process that grows faster than the
// interval can overshoot until the next sample (the sandbox's cgroup stays
// the hard bound). A container's pages are the sentry's, charged to the
// sandbox's host cgroup, so while the whole sandbox uses less than the
// container's limit (one file read) the shim is not asked at all.

// memGuard watches one container.
type memGuard struct {
	limit atomic.Int64 // bytes; <= 0 = no limit
}

// memGuards are a gvisorRuntime's watched containers by ID.
type memGuards struct {
	mu sync.Mutex
	m  map[string]*memGuard
}

// guardMemory starts watching a running container when it has a memory
// limit (or sets the limit of one already watched).
func (g *gvisorRuntime) guardMemory(ctx context.Context, id string, limit int64) {
	interval := g.h.MemoryCheckInterval()
	p := g.d.proc(id)
	if interval <= 0 || p == nil {
		return
	}
	g.guards.mu.Lock()
	defer g.guards.mu.Unlock()
	if mg, ok := g.guards.m[id]; ok {
		mg.limit.Store(limit)
		return
	}
	if limit <= 0 {
		return
	}
	if g.guards.m == nil {
		g.guards.m = map[string]*memGuard{}
	}
	mg := &memGuard{}
	mg.limit.Store(limit)
	g.guards.m[id] = mg
	go g.watchMemory(p, mg, interval)
}

func (g *gvisorRuntime) watchMemory(p *proc, mg *memGuard, interval time.Duration) {
	defer func() {
		g.guards.mu.Lock()
		delete(g.guards.m, p.id)
		g.guards.mu.Unlock()
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		limit := mg.limit.Load()
		if limit <= 0 {
			continue
		}
		if total, err := hostCgroupMemory(p.pid); err == nil && total < uint64(limit) {
			continue
		}
		ctx, cancel := context.WithTimeout(g.d.ctx(context.Background()), interval+5*time.Second)
		u, err := cgroupUsage(ctx, p)
		if err != nil || u.MemWorkingSet < uint64(limit) {
			cancel()
			continue
		}
		g.d.log.Warn("container reached its memory limit in a gVisor sandbox; OOM-killing it",
			"id", p.id, "handler", g.name, "working_set", u.MemWorkingSet, "limit", limit)
		if l := g.d.opts.Listener; l != nil {
			l.TaskOOM(p.id)
		}
		if err := p.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil {
			g.d.log.Warn("OOM-kill container", "id", p.id, "error", err)
		}
		cancel()
		return
	}
}

// hostCgroupMemory is the memory charged to the host cgroup of process pid
// (for a gVisor container, its sandbox's): memory.usage_in_bytes of the
// cgroup v1 memory controller, or memory.current on a unified hierarchy.
func hostCgroupMemory(pid uint32) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, err
	}
	var file string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.usage_in_bytes")
			break
		}
		if parts[0] == "0" && parts[1] == "" {
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.current")
		}
	}
	if file == "" {
		return 0, fmt.Errorf("no memory cgroup for pid %d", pid)
	}
	b, err = os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// memoryLimit is the memory limit in a container's stored spec (0 = none).
func (g *gvisorRuntime) memoryLimit(ctx context.Context, id string) int64 {
	ctx = g.d.ctx(ctx)
	cont, err := g.d.client.LoadContainer(ctx, id)
	if err != nil {
		return 0
	}
	spec, err := cont.Spec(ctx)
	if err != nil || spec.Linux == nil || spec.Linux.Resources == nil || spec.Linux.Resources.Memory == nil || spec.Linux.Resources.Memory.Limit == nil {
		return 0
	}
	return *spec.Linux.Resources.Memory.Limit
}

// StartContainer implements backends.Runtime: the container's memory limit
// is watched from its start.
func (g *gvisorRuntime) StartContainer(ctx context.Context, id string) (backends.TaskState, error) {
	st, err := g.Runtime.StartContainer(ctx, id)
	if err == nil {
		g.guardMemory(ctx, id, g.memoryLimit(ctx, id))
	}
	return st, err
}

// UpdateResources implements backends.Runtime: a new memory limit takes
// effect at the next sample.
func (g *gvisorRuntime) UpdateResources(ctx context.Context, id string, res *runtime.LinuxContainerResources) error {
	if err := g.Runtime.UpdateResources(ctx, id, res); err != nil {
		return err
	}
	g.guardMemory(ctx, id, g.memoryLimit(ctx, id))
	return nil
}

// UpdateSandboxResources implements backends.SandboxResizer: the pod's new
// resources go on the sandbox's cgroup (runsc update of the root container).
func (g *gvisorRuntime) UpdateSandboxResources(ctx context.Context, id string, pod *runtime.LinuxPodSandboxConfig) error {
	res := podResources(pod)
	if res == nil {
		return nil
	}
	// The base method: the sandbox's pause is no container to guard.
	return g.Runtime.UpdateResources(ctx, id, res)
}

// Recover implements backends.Recoverer: running containers are watched again.
func (g *gvisorRuntime) Recover(ctx context.Context, sandboxes []backends.Sandbox, containers []backends.Container) (map[string]backends.TaskState, map[string]error) {
	out, failed := g.Runtime.Recover(ctx, sandboxes, containers)
	for _, c := range containers {
		if out[c.ID].State == runtime.ContainerState_CONTAINER_RUNNING {
			g.guardMemory(ctx, c.ID, g.memoryLimit(ctx, c.ID))
		}
	}
	return out, failed
}
