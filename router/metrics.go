package router

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// Label keys of the container metrics, cAdvisor's names.
var (
	baseLabels    = []string{"pod", "namespace", "container", "id", "image"}
	networkLabels = append(append([]string{}, baseLabels...), "interface")
	diskLabels    = append(append([]string{}, baseLabels...), "device")
	failureLabels = append(append([]string{}, baseLabels...), "failure_type", "scope")
)

type metricDef struct {
	name, help string
	labels     []string
	typ        runtime.MetricType
}

// metricDefs are the metrics ListPodSandboxMetrics reports, in cAdvisor's
// names and units (whole seconds and bytes). Those crimux can't measure yet
// (hugetlb, PSI, ulimits, blkio on this kind of node) are not listed.
var metricDefs = []metricDef{
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in seconds.", baseLabels, runtime.MetricType_COUNTER},
	{"container_cpu_user_seconds_total", "Cumulative user CPU time, in seconds.", baseLabels, runtime.MetricType_COUNTER},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time, in seconds.", baseLabels, runtime.MetricType_COUNTER},
	{"container_cpu_cfs_periods_total", "Number of elapsed CFS enforcement periods.", baseLabels, runtime.MetricType_COUNTER},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled CFS periods.", baseLabels, runtime.MetricType_COUNTER},
	{"container_cpu_cfs_throttled_seconds_total", "Total time the container was throttled, in seconds.", baseLabels, runtime.MetricType_COUNTER},
	{"container_memory_cache", "Page cache memory, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_rss", "Anonymous and swap cache memory, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_kernel_usage", "Kernel memory, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_mapped_file", "Memory-mapped files, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_swap", "Swap usage, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_failcnt", "Number of times memory usage hit the limit.", baseLabels, runtime.MetricType_COUNTER},
	{"container_memory_usage_bytes", "Memory usage including cache, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_max_usage_bytes", "Maximum recorded memory usage, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_working_set_bytes", "Working set, in bytes.", baseLabels, runtime.MetricType_GAUGE},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures (page faults).", failureLabels, runtime.MetricType_COUNTER},
	{"container_oom_events_total", "Count of out-of-memory events observed for the container.", baseLabels, runtime.MetricType_COUNTER},
	{"container_processes", "Number of processes running inside the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_threads", "Number of threads running inside the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_threads_max", "Maximum number of threads (pids) allowed.", baseLabels, runtime.MetricType_GAUGE},
	{"container_file_descriptors", "Number of open file descriptors.", baseLabels, runtime.MetricType_GAUGE},
	{"container_sockets", "Number of open sockets.", baseLabels, runtime.MetricType_GAUGE},
	{"container_fs_usage_bytes", "Bytes used by the container's writable layer.", diskLabels, runtime.MetricType_GAUGE},
	{"container_fs_limit_bytes", "Bytes the container's filesystem can use.", diskLabels, runtime.MetricType_GAUGE},
	{"container_fs_inodes_free", "Free inodes of the container's filesystem.", diskLabels, runtime.MetricType_GAUGE},
	{"container_fs_inodes_total", "Inodes of the container's filesystem.", diskLabels, runtime.MetricType_GAUGE},
	{"container_fs_reads_bytes_total", "Cumulative bytes read (not measured here: no per-device blkio accounting).", diskLabels, runtime.MetricType_COUNTER},
	{"container_fs_reads_total", "Cumulative reads completed (not measured here).", diskLabels, runtime.MetricType_COUNTER},
	{"container_fs_writes_bytes_total", "Cumulative bytes written (not measured here).", diskLabels, runtime.MetricType_COUNTER},
	{"container_fs_writes_total", "Cumulative writes completed (not measured here).", diskLabels, runtime.MetricType_COUNTER},
	{"container_blkio_device_usage_total", "Blkio device bytes usage (not measured here).", append(append([]string{}, baseLabels...), "device", "major", "minor", "operation"), runtime.MetricType_COUNTER},
	{"container_network_receive_bytes_total", "Cumulative bytes received.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_receive_packets_total", "Cumulative packets received.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_receive_packets_dropped_total", "Cumulative packets dropped while receiving.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_receive_errors_total", "Cumulative errors while receiving.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_transmit_bytes_total", "Cumulative bytes transmitted.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_transmit_packets_total", "Cumulative packets transmitted.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_transmit_packets_dropped_total", "Cumulative packets dropped while transmitting.", networkLabels, runtime.MetricType_COUNTER},
	{"container_network_transmit_errors_total", "Cumulative errors while transmitting.", networkLabels, runtime.MetricType_COUNTER},
	{"container_spec_cpu_period", "CPU period of the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_spec_cpu_shares", "CPU shares of the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_spec_memory_limit_bytes", "Memory limit of the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit of the container.", baseLabels, runtime.MetricType_GAUGE},
	{"container_start_time_seconds", "Start time of the container since the Unix epoch, in seconds.", baseLabels, runtime.MetricType_GAUGE},
	{"container_last_seen", "Last time the container was seen, in seconds since the Unix epoch.", baseLabels, runtime.MetricType_GAUGE},
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (r *Router) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := &runtime.ListMetricDescriptorsResponse{}
	for _, d := range metricDefs {
		out.Descriptors = append(out.Descriptors, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return out, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod's running containers.
func (r *Router) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	out := &runtime.ListPodSandboxMetricsResponse{}
	for _, sb := range r.sandboxes.List() {
		if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		pm, err := r.podMetrics(ctx, sb)
		if err != nil {
			r.log.Debug("pod metrics", "id", sb.ID, "error", err)
			continue
		}
		out.PodMetrics = append(out.PodMetrics, pm)
	}
	return out, nil
}

func (r *Router) podMetrics(ctx context.Context, sb *sandbox.Sandbox) (*runtime.PodSandboxMetrics, error) {
	now := time.Now()
	pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
	var ifs []ifaceCounters
	if sb.NetNSPath != "" {
		var err error
		if ifs, err = netDevFull(sb.NetNSPath); err != nil {
			return nil, err
		}
	}
	src, _ := r.runtimeOf(sb).(backends.Metrics)
	for _, c := range r.containersOf(sb.ID) {
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
		}
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
		pm.ContainerMetrics = append(pm.ContainerMetrics, cm)
	}
	return pm, nil
}
