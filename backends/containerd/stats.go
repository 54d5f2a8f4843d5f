package containerd

import (
	"context"
	"time"

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

// Stats implements backends.Runtime from the task's cgroup counters (the
// cheap part of Usage: the kubelet polls this).
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
	u, err := r.cgroupUsage(r.d.ctx(ctx), p)
	if err != nil {
		return nil, err
	}
	out.Cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: u.CPUUsageNs}
	out.Memory.WorkingSetBytes = &runtime.UInt64Value{Value: u.MemWorkingSet}
	out.Memory.UsageBytes = &runtime.UInt64Value{Value: u.MemUsage}
	out.Memory.RssBytes = &runtime.UInt64Value{Value: u.MemRSS}
	out.Memory.PageFaults = &runtime.UInt64Value{Value: u.PgFault}
	out.Memory.MajorPageFaults = &runtime.UInt64Value{Value: u.PgMajFault}
	return out, nil
}
