package router

import (
	"context"
	"encoding/json"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

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
