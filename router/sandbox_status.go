package router

import (
	"context"
	"encoding/json"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

func nowNano() int64 { return time.Now().UnixNano() }

// PodSandboxStatus answers from what crimux recorded and heard in events; it
// never asks the runtime, so it costs the same for every handler.
func (r *Router) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	resp := &runtime.PodSandboxStatusResponse{Status: r.sandboxStatus(sb)}
	if req.Verbose {
		st := sb.Status()
		res, over := currentPodResources(sb)
		info, _ := json.Marshal(map[string]any{
			"podResources": res,
			"podOverhead":  over,
			"pid":          st.Pid,
			"netns":        sb.NetNSPath,
			"userns":       sb.UsernsPath,
			"handler":      sb.Handler,
			"image":        sb.Image,
			"networkUp":    st.NetworkReady,
			"podDir":       r.podDir(sb.ID),
			"recordName":   sb.Name,
		})
		resp.Info = map[string]string{"info": string(info)}
	}
	for _, c := range r.containersOf(sb.ID) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, r.containerStatus(c))
	}
	resp.Timestamp = nowNano()
	return resp, nil
}

func (r *Router) sandboxStatus(sb *sandbox.Sandbox) *runtime.PodSandboxStatus {
	st := sb.Status()
	cfg := sb.Config
	out := &runtime.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       cfg.Metadata,
		State:          st.State,
		CreatedAt:      sb.CreatedAt,
		Labels:         cfg.Labels,
		Annotations:    cfg.Annotations,
		RuntimeHandler: sb.Handler,
		Network:        &runtime.PodSandboxNetworkStatus{},
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{
			Network: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork(),
			Pid:     cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid(),
			Ipc:     cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc(),
		}}},
	}
	if len(st.IPs) > 0 {
		out.Network.Ip = st.IPs[0]
		for _, ip := range st.IPs[1:] {
			out.Network.AdditionalIps = append(out.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return out
}
