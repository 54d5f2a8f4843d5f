// Package metrics holds crimux's Prometheus metrics (client_golang) and the
// registry /metrics serves: the packages that measure something update the
// metric here; cmd/crimux serves the registry on [metrics] address. Names
// follow Prometheus conventions: the crimux_ prefix, base units (seconds,
// bytes), _total on counters.
package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets fit CRI calls: from a status answered from memory (well
// under a millisecond) to a gVisor pod start or an image pull (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

var (
	// CRIRequests counts CRI calls by method, handler and gRPC code.
	CRIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_cri_requests_total",
		Help: "CRI calls served, by method, runtime handler (empty where the call names none) and gRPC code.",
	}, []string{"method", "handler", "code"})
	// CRIDuration is the latency of CRI calls by method and handler.
	CRIDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "crimux_cri_request_duration_seconds",
		Help:    "Latency of CRI calls, by method and runtime handler.",
		Buckets: latencyBuckets,
	}, []string{"method", "handler"})
	// CNIDuration is the latency of CNI ADD and DEL.
	CNIDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "crimux_cni_operation_duration_seconds",
		Help:    "Latency of CNI operations on pod networks, by operation (add, del).",
		Buckets: latencyBuckets,
	}, []string{"operation"})
	// CNIFailures counts failed CNI ADDs and DELs.
	CNIFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_cni_operation_failures_total",
		Help: "CNI operations that failed, by operation (add, del).",
	}, []string{"operation"})
	// ImagePulls counts image pulls by handler and result.
	ImagePulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_image_pulls_total",
		Help: "Image pulls (PullImage and sandbox images), by runtime handler (empty: none named) and result (success, failure).",
	}, []string{"handler", "result"})
	// ImagePullBytes adds up the size of pulled images.
	ImagePullBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_image_pull_bytes_total",
		Help: "Size of the images pulled, by runtime handler.",
	}, []string{"handler"})
	// ImagePullDuration is how long pulls take.
	ImagePullDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "crimux_image_pull_duration_seconds",
		Help:    "Duration of image pulls, by runtime handler.",
		Buckets: latencyBuckets,
	}, []string{"handler"})
	// OOMEvents counts containers hit by the OOM killer (the kernel's, or
	// crimux's gVisor memory guard).
	OOMEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_oom_events_total",
		Help: "OOM kills of containers, by runtime handler.",
	}, []string{"handler"})
	// GvisorMemorySamples counts the gVisor memory guard's checks of a
	// container's use against its limit.
	GvisorMemorySamples = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_gvisor_memory_samples_total",
		Help: "Checks of a gVisor container's memory use against its own limit, by handler and how (cgroup: the sandbox's host cgroup was under the limit; runsc: the container's use was read from the sandbox).",
	}, []string{"handler", "source"})
	// GvisorMemoryKills counts containers the guard OOM-killed.
	GvisorMemoryKills = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_gvisor_memory_kills_total",
		Help: "gVisor containers OOM-killed by crimux's memory guard for reaching their own limit, by handler.",
	}, []string{"handler"})
	// ExitWatchReconnects counts the event and exit streams followed again
	// after they broke (the runtime restarted or went away).
	ExitWatchReconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crimux_exit_watch_reconnects_total",
		Help: "Event and exit streams followed again after they broke, by driver and stream (events: the runtime's event stream; task: one task's exit wait).",
	}, []string{"driver", "stream"})
)

// The pods and containers crimux has, which the router reports when
// /metrics is scraped (router.Collector).
var (
	PodsDesc = prometheus.NewDesc("crimux_pods", "Pod sandboxes crimux has, by runtime handler and state (ready, notready).",
		[]string{"handler", "state"}, nil)
	ContainersDesc = prometheus.NewDesc("crimux_containers", "Containers crimux has, by their pod's runtime handler and state (created, running, exited, unknown).",
		[]string{"handler", "state"}, nil)
)

// own are crimux's metrics (not the Go runtime's or the process's).
var own = []prometheus.Collector{CRIRequests, CRIDuration, CNIDuration, CNIFailures, ImagePulls, ImagePullBytes, ImagePullDuration,
	OOMEvents, GvisorMemorySamples, GvisorMemoryKills, ExitWatchReconnects}

// Names are the names of every series family /metrics can serve: crimux's
// (with a histogram's _bucket, _sum and _count), the Go runtime's and the
// process's.
func Names() []string {
	var out []string
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range own {
			c.Describe(descs)
		}
		descs <- PodsDesc
		descs <- ContainersDesc
		close(descs)
	}()
	hist := map[string]bool{}
	for _, c := range own {
		if _, ok := c.(*prometheus.HistogramVec); ok {
			ch := make(chan *prometheus.Desc, 1)
			c.Describe(ch)
			hist[fqName(<-ch)] = true
		}
	}
	for d := range descs {
		n := fqName(d)
		out = append(out, n)
		if hist[n] {
			out = append(out, n+"_bucket", n+"_sum", n+"_count")
		}
	}
	if mfs, err := Registry.Gather(); err == nil {
		for _, mf := range mfs {
			if n := mf.GetName(); !strings.HasPrefix(n, "crimux_") {
				out = append(out, n)
			}
		}
	}
	return out
}

// fqName is a Desc's metric name (client_golang keeps it unexported; its
// String form is stable: Desc{fqName: "…", …}).
func fqName(d *prometheus.Desc) string {
	s := d.String()
	const key = `fqName: "`
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	s = s[i+len(key):]
	return s[:strings.IndexByte(s, '"')]
}

// Registry is what /metrics serves: the metrics above, the Go runtime's
// and the process's, and the collectors added with Register.
var Registry = prometheus.NewRegistry()

func init() {
	Registry.MustRegister(own...)
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Register adds a collector (the router's pods and containers).
func Register(c prometheus.Collector) error { return Registry.Register(c) }

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}
