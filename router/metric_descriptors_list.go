package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (r *Router) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := &runtime.ListMetricDescriptorsResponse{}
	for _, d := range metricDefs {
		out.Descriptors = append(out.Descriptors, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return out, nil
}
