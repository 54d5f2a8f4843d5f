package containerd

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crimux/crimux/internal/metrics"
)

// memGuard watches one container.
type memGuard struct {
	limit atomic.Int64 // bytes; <= 0 = no limit
}

// memGuards are a runscKind's watched containers by ID.
type memGuards struct {
	mu sync.Mutex
	m  map[string]*memGuard
}

// watch implements containerWatcher: a container that started, was found
// running after a restart, or had its resources changed is guarded with the
// memory limit its spec holds now.
func (g *runscKind) watch(ctx context.Context, id string, rec *containers.Container) {
	if g.opts.MemoryCheckInterval() <= 0 || g.d.proc(id) == nil {
		return // nothing to guard: no record to read or decode
	}
	if rec == nil {
		got, err := g.d.client.ContainerService().Get(g.d.ctx(ctx), id)
		if err != nil {
			got = containers.Container{} // unknown: no limit
		}
		rec = &got
	}
	g.guardMemory(ctx, id, recordMemoryLimit(rec))
}

// guardMemory starts watching a running container when it has a memory
// limit (or sets the limit of one already watched).
func (g *runscKind) guardMemory(ctx context.Context, id string, limit int64) {
	interval := g.opts.MemoryCheckInterval()
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

func (g *runscKind) watchMemory(p *proc, mg *memGuard, interval time.Duration) {
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
			metrics.GvisorMemorySamples.WithLabelValues(g.name, "cgroup").Inc()
			continue
		}
		ctx, cancel := context.WithTimeout(g.d.ctx(context.Background()), interval+5*time.Second)
		u, err := shimCgroupUsage(ctx, p)
		if err == nil {
			metrics.GvisorMemorySamples.WithLabelValues(g.name, "runsc").Inc()
		}
		if err != nil || u.MemWorkingSet < uint64(limit) {
			cancel()
			continue
		}
		metrics.GvisorMemoryKills.WithLabelValues(g.name).Inc()
		g.d.log.Warn("container reached its memory limit in a gVisor sandbox; OOM-killing it",
			"id", p.id, "handler", g.name, "working_set", u.MemWorkingSet, "limit", limit)
		if l := g.d.listener; l != nil {
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
	dirs, err := cgroupDirs(pid)
	if err != nil {
		return 0, err
	}
	if d := dirs["memory"]; d != "" {
		return readUint(filepath.Join(d, "memory.usage_in_bytes"))
	}
	if d := dirs[""]; d != "" {
		return readUint(filepath.Join(d, "memory.current"))
	}
	return 0, fmt.Errorf("no memory cgroup for pid %d", pid)
}

// recordMemoryLimit is the memory limit in a container record's spec
// (0 = none or unreadable).
func recordMemoryLimit(rec *containers.Container) int64 {
	if rec.Spec == nil {
		return 0
	}
	var spec specs.Spec
	if err := typeurl.UnmarshalTo(rec.Spec, &spec); err != nil {
		return 0
	}
	if spec.Linux == nil || spec.Linux.Resources == nil || spec.Linux.Resources.Memory == nil || spec.Linux.Resources.Memory.Limit == nil {
		return 0
	}
	return *spec.Linux.Resources.Memory.Limit
}
