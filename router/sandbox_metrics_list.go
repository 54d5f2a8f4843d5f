package router

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// ListPodSandboxMetrics reports the metrics of every ready pod's running containers.
func (r *Router) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	out := &runtime.ListPodSandboxMetricsResponse{}
	ctrs := r.containersByPod()
	for _, sb := range r.sandboxes.List() {
		if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		pm, err := r.podMetrics(ctx, sb, ctrs[sb.ID])
		if err != nil {
			r.log.Debug("pod metrics", "id", sb.ID, "error", err)
			continue
		}
		out.PodMetrics = append(out.PodMetrics, pm)
	}
	return out, nil
}

// podMetrics are the metrics of a pod's running containers; a pod whose
// runtime can't measure usage reports zeros for it.
func (r *Router) podMetrics(ctx context.Context, sb *sandbox.Sandbox, ctrs []*sandbox.Container) (*runtime.PodSandboxMetrics, error) {
	now := time.Now()
	pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
	var ifs []ifaceCounters
	if netns := r.podNetNS(ctx, sb); netns != "" {
		var err error
		if ifs, err = netDevFull(netns); err != nil {
			return nil, err
		}
	}
	rt := r.runtimeOf(sb)
	src, _ := rt.(backends.Metrics)
	for _, c := range ctrs {
		st := c.Status()
		if st.State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		var u backends.Usage
		if src != nil {
			var err error
			if u, err = src.Usage(ctx, c.ID); err != nil {
				return nil, err
			}
		} else if cs, err := rt.Stats(ctx, c.ID); err == nil {
			// A runtime with no raw counters (a remote): what its stats tell.
			u = backends.Usage{CPUUsageNs: cs.GetCpu().GetUsageCoreNanoSeconds().GetValue(), MemUsage: cs.GetMemory().GetUsageBytes().GetValue(),
				MemWorkingSet: cs.GetMemory().GetWorkingSetBytes().GetValue(), MemRSS: cs.GetMemory().GetRssBytes().GetValue(),
				PgFault: cs.GetMemory().GetPageFaults().GetValue(), PgMajFault: cs.GetMemory().GetMajorPageFaults().GetValue()}
		}
		pm.ContainerMetrics = append(pm.ContainerMetrics, containerMetrics(sb, c, st, u, ifs, now))
	}
	return pm, nil
}

// containerMetrics are one running container's metrics, in metricDefs'
// names and units. ifs are its pod's interfaces: its containers share the
// pod's netns, so each reports them, as cAdvisor does.
func containerMetrics(sb *sandbox.Sandbox, c *sandbox.Container, st sandbox.ContainerStatus, u backends.Usage, ifs []ifaceCounters, now time.Time) *runtime.ContainerMetrics {
	base := []string{sb.Config.GetMetadata().GetName(), sb.Config.GetMetadata().GetNamespace(), c.Config.GetMetadata().GetName(), c.ID, c.ImageName}
	cm := &runtime.ContainerMetrics{ContainerId: c.ID}
	add := func(name string, extra []string, v uint64) {
		typ := runtime.MetricType_GAUGE
		for _, d := range metricDefs {
			if d.name == name {
				typ = d.typ
			}
		}
		cm.Metrics = append(cm.Metrics, &runtime.Metric{Name: name, Timestamp: now.UnixNano(), MetricType: typ,
			LabelValues: append(append([]string{}, base...), extra...), Value: &runtime.UInt64Value{Value: v}})
	}
	sec := uint64(time.Second)
	add("container_cpu_usage_seconds_total", nil, u.CPUUsageNs/sec)
	add("container_cpu_user_seconds_total", nil, u.CPUUserNs/sec)
	add("container_cpu_system_seconds_total", nil, u.CPUSystemNs/sec)
	add("container_cpu_cfs_periods_total", nil, u.CFSPeriods)
	add("container_cpu_cfs_throttled_periods_total", nil, u.CFSThrottledPeriods)
	add("container_cpu_cfs_throttled_seconds_total", nil, u.CFSThrottledNs/sec)
	add("container_memory_cache", nil, u.MemCache)
	add("container_memory_rss", nil, u.MemRSS)
	add("container_memory_kernel_usage", nil, u.MemKernel)
	add("container_memory_mapped_file", nil, u.MemMappedFile)
	add("container_memory_swap", nil, u.MemSwap)
	add("container_memory_failcnt", nil, u.MemFailcnt)
	add("container_memory_usage_bytes", nil, u.MemUsage)
	add("container_memory_max_usage_bytes", nil, u.MemMaxUsage)
	add("container_memory_working_set_bytes", nil, u.MemWorkingSet)
	add("container_memory_failures_total", []string{"pgfault", "container"}, u.PgFault)
	add("container_memory_failures_total", []string{"pgmajfault", "container"}, u.PgMajFault)
	add("container_oom_events_total", nil, st.OOMEvents)
	add("container_processes", nil, u.Processes)
	add("container_threads", nil, u.Threads)
	add("container_threads_max", nil, u.ThreadsMax)
	add("container_file_descriptors", nil, u.FileDescriptors)
	add("container_sockets", nil, u.Sockets)
	dev := []string{"writable-layer"}
	add("container_fs_usage_bytes", dev, u.FsUsageBytes)
	add("container_fs_limit_bytes", dev, u.FsLimitBytes)
	add("container_fs_inodes_free", dev, u.FsInodesFree)
	add("container_fs_inodes_total", dev, u.FsInodesTotal)
	for _, i := range ifs {
		n := []string{i.name}
		add("container_network_receive_bytes_total", n, i.rxBytes)
		add("container_network_receive_packets_total", n, i.rxPackets)
		add("container_network_receive_packets_dropped_total", n, i.rxDrops)
		add("container_network_receive_errors_total", n, i.rxErrors)
		add("container_network_transmit_bytes_total", n, i.txBytes)
		add("container_network_transmit_packets_total", n, i.txPackets)
		add("container_network_transmit_packets_dropped_total", n, i.txDrops)
		add("container_network_transmit_errors_total", n, i.txErrors)
	}
	res := c.Config.GetLinux().GetResources()
	add("container_spec_cpu_period", nil, uint64(res.GetCpuPeriod()))
	add("container_spec_cpu_shares", nil, uint64(res.GetCpuShares()))
	add("container_spec_memory_limit_bytes", nil, uint64(res.GetMemoryLimitInBytes()))
	add("container_spec_memory_swap_limit_bytes", nil, uint64(res.GetMemorySwapLimitInBytes()))
	add("container_start_time_seconds", nil, uint64(st.StartedAt/int64(time.Second)))
	add("container_last_seen", nil, uint64(now.Unix()))
	return cm
}
