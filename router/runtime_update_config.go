package router

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateRuntimeConfig accepts the kubelet's pod CIDR. crimux's network comes
// from the CNI config, which assigns addresses itself, so it is only logged.
func (r *Router) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		r.log.Info("kubelet pod CIDR (the CNI config decides addresses)", "cidr", cidr)
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
