package containerd

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

func TestPodResources(t *testing.T) {
	if podResources(&runtime.LinuxPodSandboxConfig{}) != nil {
		t.Error("a pod without resources got some")
	}
	got := podResources(&runtime.LinuxPodSandboxConfig{
		Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 100 << 20},
		Overhead:  &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 10000, CpuShares: 100, MemoryLimitInBytes: 50 << 20},
	})
	if got.CpuPeriod != 100000 || got.CpuQuota != 60000 || got.CpuShares != 612 || got.MemoryLimitInBytes != 150<<20 {
		t.Errorf("resources plus overhead: %+v", got)
	}
	// Without a memory limit on the pod, overhead alone sets none.
	got = podResources(&runtime.LinuxPodSandboxConfig{
		Resources: &runtime.LinuxContainerResources{CpuShares: 2},
		Overhead:  &runtime.LinuxContainerResources{MemoryLimitInBytes: 50 << 20, CpuQuota: 10000, CpuPeriod: 100000},
	})
	if got.MemoryLimitInBytes != 0 || got.CpuQuota != 0 || got.CpuShares != 2 {
		t.Errorf("overhead without limits: %+v", got)
	}
}

func TestPodIDMaps(t *testing.T) {
	sb := func(u *runtime.UserNamespace) backends.Sandbox {
		return backends.Sandbox{Config: &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: u}}}}}
	}
	// POD is the zero mode: no UsernsOptions must not read as a pod user namespace.
	if _, _, ok := podIDMaps(sb(nil)); ok {
		t.Error("no userns options gave a pod user namespace")
	}
	if _, _, ok := podIDMaps(sb(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE})); ok {
		t.Error("NODE gave a pod user namespace")
	}
	m := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 65536}}
	uids, gids, ok := podIDMaps(sb(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m}))
	if !ok || len(uids) != 1 || uids[0].HostID != 1000 || uids[0].Size != 65536 || len(gids) != 1 {
		t.Errorf("POD: %v %v %v", uids, gids, ok)
	}
	if snapshotOpts(sb(nil)) != nil {
		t.Error("snapshot remap labels without a pod user namespace")
	}
}
