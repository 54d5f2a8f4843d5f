package containerd

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"

	"github.com/crimux/crimux/backends"
)

var _ backends.Metrics = (*Runtime)(nil)

// Usage implements backends.Metrics: cgroup counters from the shim, process
// counts from /proc for the task's processes, and the writable layer's use.
func (r *Runtime) Usage(ctx context.Context, id string) (backends.Usage, error) {
	p := r.d.proc(id)
	if p == nil {
		return backends.Usage{}, nil
	}
	ctx = r.d.ctx(ctx)
	u, err := r.cgroupUsage(ctx, p)
	if err != nil {
		return u, err
	}
	// Threads, file descriptors and sockets of the task's processes, as the
	// host sees them (inside a gVisor sandbox, only its host processes).
	if pids, err := p.task.Pids(ctx); err == nil {
		for _, pi := range pids {
			countProc(pi.Pid, &u)
		}
	}
	// The writable layer.
	if usage, err := r.d.client.SnapshotService(r.opts.Snapshotter).Usage(ctx, id); err == nil {
		u.FsUsageBytes, u.FsInodesUsed = uint64(usage.Size), uint64(usage.Inodes)
	}
	if root, err := r.snapshotterRoot(ctx); err == nil {
		var st unix.Statfs_t
		if unix.Statfs(root, &st) == nil {
			u.FsInodesTotal, u.FsInodesFree = st.Files, st.Ffree
			u.FsLimitBytes = st.Blocks * uint64(st.Bsize)
		}
	}
	return u, nil
}

// cgroupUsage reads the task's cgroup counters (v1 or v2). Stats and Usage
// both build on it. A container with a cgroup of its own (runc) has them
// read from its cgroup's files (cgroupstats.go); others (gVisor: its
// sandbox knows) from the shim, as is a runc container whose cgroup files
// can't be read.
func (r *Runtime) cgroupUsage(ctx context.Context, p *proc) (backends.Usage, error) {
	if r.kind.cgroupPerContainer() && p.cgroups != nil {
		u, err := readCgroupUsage(p.cgroups, r.d.cgroups.Unified)
		if err == nil {
			return u, nil
		}
		r.d.log.Debug("read the container's cgroup; asking its shim", "id", p.id, "error", err)
	}
	return shimCgroupUsage(ctx, p)
}

// shimCgroupUsage reads the task's cgroup counters from its shim.
func shimCgroupUsage(ctx context.Context, p *proc) (backends.Usage, error) {
	var u backends.Usage
	m, err := p.task.Metrics(ctx)
	if err != nil {
		return u, fmt.Errorf("metrics of %s: %w", p.id, mapErr(err))
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return u, fmt.Errorf("decode metrics of %s: %w", p.id, err)
	}
	switch s := data.(type) {
	case *v1.Metrics:
		if c := s.CPU; c != nil {
			if c.Usage != nil {
				u.CPUUsageNs, u.CPUUserNs, u.CPUSystemNs = c.Usage.Total, c.Usage.User, c.Usage.Kernel
			}
			if t := c.Throttling; t != nil {
				u.CFSPeriods, u.CFSThrottledPeriods, u.CFSThrottledNs = t.Periods, t.ThrottledPeriods, t.ThrottledTime
			}
		}
		if mem := s.Memory; mem != nil {
			u.MemCache, u.MemRSS, u.MemMappedFile = mem.TotalCache, mem.TotalRSS, mem.TotalMappedFile
			u.PgFault, u.PgMajFault = mem.TotalPgFault, mem.TotalPgMajFault
			if mu := mem.Usage; mu != nil {
				u.MemUsage, u.MemMaxUsage, u.MemFailcnt = mu.Usage, mu.Max, mu.Failcnt
				if mem.TotalInactiveFile < mu.Usage {
					u.MemWorkingSet = mu.Usage - mem.TotalInactiveFile
				}
			}
			if sw := mem.Swap; sw != nil && sw.Usage > u.MemUsage {
				u.MemSwap = sw.Usage - u.MemUsage
			}
			if k := mem.Kernel; k != nil {
				u.MemKernel = k.Usage
			}
		}
		if ps := s.Pids; ps != nil {
			u.Processes, u.ThreadsMax = ps.Current, ps.Limit
		}
	case *v2.Metrics:
		if c := s.CPU; c != nil {
			u.CPUUsageNs, u.CPUUserNs, u.CPUSystemNs = c.UsageUsec*1000, c.UserUsec*1000, c.SystemUsec*1000
			u.CFSPeriods, u.CFSThrottledPeriods, u.CFSThrottledNs = c.NrPeriods, c.NrThrottled, c.ThrottledUsec*1000
		}
		if mem := s.Memory; mem != nil {
			u.MemCache, u.MemRSS, u.MemMappedFile = mem.File, mem.Anon, mem.FileMapped
			u.PgFault, u.PgMajFault = mem.Pgfault, mem.Pgmajfault
			u.MemUsage, u.MemMaxUsage, u.MemSwap, u.MemKernel = mem.Usage, mem.MaxUsage, mem.SwapUsage, mem.KernelStack+mem.Slab
			if mem.InactiveFile < mem.Usage {
				u.MemWorkingSet = mem.Usage - mem.InactiveFile
			}
		}
		if me := s.MemoryEvents; me != nil {
			u.MemFailcnt = me.Max
		}
		if ps := s.Pids; ps != nil {
			u.Processes, u.ThreadsMax = ps.Current, ps.Limit
			if ps.Limit == math.MaxUint64 { // "max": no limit, 0 as on v1
				u.ThreadsMax = 0
			}
		}
	}
	return u, nil
}

func countProc(pid uint32, u *backends.Usage) {
	dir := fmt.Sprintf("/proc/%d", pid)
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				u.Threads += n
			}
		}
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return
	}
	u.FileDescriptors += uint64(len(fds))
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			u.Sockets++
		}
	}
}

func (r *Runtime) snapshotterRoot(ctx context.Context) (string, error) {
	ps, err := r.d.client.IntrospectionService().Plugins(ctx, fmt.Sprintf(`type==io.containerd.snapshotter.v1,id==%s`, r.opts.Snapshotter))
	if err != nil || len(ps.Plugins) == 0 {
		return "", fmt.Errorf("snapshotter %q not found", r.opts.Snapshotter)
	}
	return ps.Plugins[0].Exports["root"], nil
}
