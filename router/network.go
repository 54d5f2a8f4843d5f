package router

import (
	"strings"

	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/sandbox"
)

// cniPod is what CNI ADD and DEL need of a pod. It is built from the record
// each time, so that the DEL of a pod after a restart matches its ADD.
func (r *Router) cniPod(md sandbox.Metadata) cni.Pod {
	cfg := md.Config
	p := cni.Pod{
		ID:         md.ID,
		Name:       cfg.GetMetadata().GetName(),
		Namespace:  cfg.GetMetadata().GetNamespace(),
		UID:        cfg.GetMetadata().GetUid(),
		NetNS:      md.NetNSPath,
		CgroupPath: cfg.GetLinux().GetCgroupParent(),
	}
	if h, ok := r.conf().Handlers[md.Handler]; ok {
		p.ConfDir = h.CNIConfDir
	}
	for _, pm := range cfg.PortMappings {
		if pm.HostPort == 0 {
			continue
		}
		proto := strings.ToLower(pm.Protocol.String())
		p.PortMappings = append(p.PortMappings, cni.PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: pm.HostIp})
	}
	if d := cfg.GetDnsConfig(); d != nil {
		p.DNS = &cni.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	return p
}
