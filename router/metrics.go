package router

import runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

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
