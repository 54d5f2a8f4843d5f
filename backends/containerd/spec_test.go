package containerd

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
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
