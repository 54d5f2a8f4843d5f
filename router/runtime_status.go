package router

import (
	"context"
	"encoding/json"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Version names crimux and what its default handler's driver runs on.
func (r *Router) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       "crimux",
		RuntimeVersion:    Version(),
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady (every driver answers), NetworkReady (a CNI
// config is loadable) and each configured handler with its features.
func (r *Router) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	rtReady := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true}
	for name, d := range r.drivers {
		if err := d.Ready(ctx); err != nil {
			rtReady.Status = false
			rtReady.Reason = "DriverNotReady"
			rtReady.Message = fmt.Sprintf("driver %s: %v", name, err)
			break
		}
	}
	netReady := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := r.cni.Status(""); err != nil {
		netReady.Status = false
		netReady.Reason = "NetworkPluginNotReady"
		netReady.Message = fmt.Sprintf("cni: %v", err)
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{rtReady, netReady}},
		// Merge adds the image's /etc/group memberships, Strict doesn't: both
		// are how crimux builds a container's groups, for every handler.
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	for _, name := range r.cfg.HandlerNames() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: name, Features: r.runtimes[name].Features()})
		if name == r.cfg.DefaultHandler {
			// The empty name stands for the default handler, as the kubelet expects.
			resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: "", Features: r.runtimes[name].Features()})
		}
	}
	if req.Verbose {
		// Every info value is a JSON document (crictl info decodes them).
		cfg, err := json.Marshal(r.cfg)
		if err != nil {
			return nil, fmt.Errorf("encode config: %w", err)
		}
		resp.Info = map[string]string{"config": string(cfg)}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver, which the kubelet must match.
func (r *Router) RuntimeConfig(ctx context.Context, req *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	drv := runtime.CgroupDriver_CGROUPFS
	if r.cfg.CgroupDriver == "systemd" {
		drv = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: drv}}, nil
}

// UpdateRuntimeConfig accepts the kubelet's pod CIDR. crimux's network comes
// from the CNI config, which assigns addresses itself, so it is only logged.
func (r *Router) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		r.log.Info("kubelet pod CIDR (the CNI config decides addresses)", "cidr", cidr)
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
