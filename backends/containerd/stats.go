package containerd

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crimux/crimux/backends"
)

type termSize = remotecommand.TerminalSize

type containersContainer = containers.Container

var errDeadline = backends.ErrDeadline

func setSpec(c *containers.Container, s *specs.Spec) error {
	a, err := typeurl.MarshalAny(s)
	if err != nil {
		return err
	}
	c.Spec = a
	return nil
}

// Stats implements backends.Runtime from the task's cgroup metrics.
func (r *Runtime) Stats(ctx context.Context, id string) (*runtime.ContainerStats, error) {
	now := time.Now().UnixNano()
	out := &runtime.ContainerStats{
		Cpu:           &runtime.CpuUsage{Timestamp: now},
		Memory:        &runtime.MemoryUsage{Timestamp: now},
		WritableLayer: &runtime.FilesystemUsage{Timestamp: now},
	}
	p := r.d.proc(id)
	if p == nil {
		return out, nil // not running: zero usage
	}
	m, err := p.task.Metrics(r.d.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", id, mapErr(err))
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, fmt.Errorf("decode metrics of %s: %w", id, err)
	}
	switch s := data.(type) {
	case *v1.Metrics:
		if s.CPU != nil && s.CPU.Usage != nil {
			out.Cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: s.CPU.Usage.Total}
		}
		if s.Memory != nil && s.Memory.Usage != nil {
			ws := s.Memory.Usage.Usage
			if s.Memory.TotalInactiveFile < ws {
				ws -= s.Memory.TotalInactiveFile
			} else {
				ws = 0
			}
			out.Memory.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			out.Memory.UsageBytes = &runtime.UInt64Value{Value: s.Memory.Usage.Usage}
			out.Memory.RssBytes = &runtime.UInt64Value{Value: s.Memory.TotalRSS}
			out.Memory.PageFaults = &runtime.UInt64Value{Value: s.Memory.TotalPgFault}
			out.Memory.MajorPageFaults = &runtime.UInt64Value{Value: s.Memory.TotalPgMajFault}
		}
	case *v2.Metrics:
		if s.CPU != nil {
			out.Cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: s.CPU.UsageUsec * 1000}
		}
		if s.Memory != nil {
			ws := s.Memory.Usage
			if s.Memory.InactiveFile < ws {
				ws -= s.Memory.InactiveFile
			} else {
				ws = 0
			}
			out.Memory.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			out.Memory.UsageBytes = &runtime.UInt64Value{Value: s.Memory.Usage}
			out.Memory.RssBytes = &runtime.UInt64Value{Value: s.Memory.Anon}
			out.Memory.PageFaults = &runtime.UInt64Value{Value: s.Memory.Pgfault}
			out.Memory.MajorPageFaults = &runtime.UInt64Value{Value: s.Memory.Pgmajfault}
		}
	}
	return out, nil
}
