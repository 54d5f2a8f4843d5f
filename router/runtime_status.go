package router

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
)

// Status reports RuntimeReady (every driver answers), NetworkReady (a CNI
// config is loadable) and each configured handler with its features.
func (r *Router) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	hs := r.set.Load()
	rtReady := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true}
	var handlerConds []*runtime.RuntimeCondition
	for name, d := range hs.drivers {
		if hr, ok := d.(backends.HandlerReadiness); ok {
			handlerConds = append(handlerConds, handlerConditions(ctx, hs.cfg, name, hr)...)
			continue
		}
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
		Status: &runtime.RuntimeStatus{Conditions: append([]*runtime.RuntimeCondition{rtReady, netReady}, handlerConds...)},
		// Merge adds the image's /etc/group memberships, Strict doesn't: both
		// are how crimux builds a container's groups, for every handler.
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	for _, name := range hs.cfg.HandlerNames() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: name, Features: hs.runtimes[name].Features()})
		if name == hs.cfg.DefaultHandler {
			// The empty name stands for the default handler, as the kubelet expects.
			resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: "", Features: hs.runtimes[name].Features()})
		}
	}
	if req.Verbose {
		// Every info value is a JSON document (crictl info decodes them).
		cfg, err := json.Marshal(hs.cfg)
		if err != nil {
			return nil, fmt.Errorf("encode config: %w", err)
		}
		resp.Info = map[string]string{"config": string(cfg)}
	}
	return resp, nil
}

// HandlerReadyCondition is the type of the condition Status reports for a
// handler whose driver's outage touches only its own handlers (a forwarded
// handler): "<handler>/RuntimeReady".
func HandlerReadyCondition(handler string) string { return handler + "/" + runtime.RuntimeReady }

// handlerConditions are the readiness of each configured handler of d,
// asked at once (a remote that hangs costs its own timeout only once).
func handlerConditions(ctx context.Context, cfg *conf.Config, driver string, d backends.HandlerReadiness) []*runtime.RuntimeCondition {
	var names []string
	for _, h := range cfg.HandlerNames() {
		if cfg.Handlers[h].Driver == driver {
			names = append(names, h)
		}
	}
	out := make([]*runtime.RuntimeCondition, len(names))
	var wg sync.WaitGroup
	for i, h := range names {
		wg.Go(func() {
			c := &runtime.RuntimeCondition{Type: HandlerReadyCondition(h), Status: true}
			if err := d.HandlerReady(ctx, h); err != nil {
				c.Status, c.Reason, c.Message = false, "RemoteNotReady", err.Error()
			}
			out[i] = c
		})
	}
	wg.Wait()
	return out
}
