package router

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/internal/metrics"
)

// crimux's own Prometheus metrics (internal/metrics): the CRI calls by
// method and handler, and the pods and containers by handler and state.
// (metrics.go is the CRI's ListPodSandboxMetrics, in cAdvisor's names.)

// requestHandler is the runtime handler a CRI call is about: the one a
// RunPodSandbox asks for, the pod's (of a pod or container ID it names),
// the runtime_handler of an image call; "" for calls about no handler. A
// name a client sent that is not a configured handler is "unknown": a
// client's strings never become label values (each would be a series of
// its own). A pod's handler comes from its record (a reload may have
// removed it since).
func (r *Router) requestHandler(req any) string {
	named := ""
	switch q := req.(type) {
	case *runtime.RunPodSandboxRequest:
		named = q.RuntimeHandler
		if named == "" {
			return r.conf().DefaultHandler
		}
	case interface{ GetPodSandboxId() string }:
		if sb, err := r.sandboxes.Get(q.GetPodSandboxId()); err == nil {
			return sb.Handler
		}
		return ""
	case interface{ GetContainerId() string }:
		if c, err := r.containers.Get(q.GetContainerId()); err == nil {
			if sb, err := r.sandboxes.Get(c.SandboxID); err == nil {
				return sb.Handler
			}
		}
		return ""
	case interface{ GetImage() *runtime.ImageSpec }:
		named = q.GetImage().GetRuntimeHandler()
	case *runtime.ListImagesRequest:
		named = q.GetFilter().GetImage().GetRuntimeHandler()
	}
	if _, ok := r.conf().Handlers[named]; !ok && named != "" {
		return "unknown"
	}
	return named
}

// shortMethod is a gRPC method's name without its service path.
func shortMethod(full string) string {
	return full[strings.LastIndexByte(full, '/')+1:]
}

// Collector reports the pods and containers crimux has, by handler and
// state, when /metrics is scraped.
func (r *Router) Collector() prometheus.Collector { return objectCollector{r} }

type objectCollector struct{ r *Router }

func (o objectCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- metrics.PodsDesc
	ch <- metrics.ContainersDesc
}

func (o objectCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ handler, state string }
	pods, ctrs := map[key]int{}, map[key]int{}
	handlerOf := map[string]string{}
	// Every configured handler and state appears, at 0 when empty.
	for _, h := range o.r.conf().HandlerNames() {
		for _, s := range []string{"ready", "notready"} {
			pods[key{h, s}] = 0
		}
		for _, s := range []string{"created", "running", "exited", "unknown"} {
			ctrs[key{h, s}] = 0
		}
	}
	for _, sb := range o.r.sandboxes.List() {
		handlerOf[sb.ID] = sb.Handler
		state := "notready"
		if sb.Status().State == runtime.PodSandboxState_SANDBOX_READY {
			state = "ready"
		}
		pods[key{sb.Handler, state}]++
	}
	for _, c := range o.r.containers.List() {
		state := strings.ToLower(strings.TrimPrefix(c.Status().State.String(), "CONTAINER_"))
		ctrs[key{handlerOf[c.SandboxID], state}]++
	}
	for k, n := range pods {
		ch <- prometheus.MustNewConstMetric(metrics.PodsDesc, prometheus.GaugeValue, float64(n), k.handler, k.state)
	}
	for k, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(metrics.ContainersDesc, prometheus.GaugeValue, float64(n), k.handler, k.state)
	}
}

// countOOM counts an OOM kill of container id's process.
func (r *Router) countOOM(podID string) {
	handler := ""
	if sb, err := r.sandboxes.Get(podID); err == nil {
		handler = sb.Handler
	}
	metrics.OOMEvents.WithLabelValues(handler).Inc()
}
