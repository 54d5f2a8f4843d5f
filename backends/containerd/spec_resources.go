package containerd

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerResources are the container's cgroup limits (as far as the node's
// cgroups can take them) and its oom_score_adj, clamped to crimux's own
// where lowering it isn't allowed.
func containerResources(in containerSpecInput) ([]oci.SpecOpts, error) {
	res := in.Config.GetLinux().GetResources()
	if res == nil {
		return nil, nil
	}
	if err := checkUnified(res, in.Node.cgroups); err != nil {
		return nil, err
	}
	return []oci.SpecOpts{withResources(res, in.Node.cgroups), withOOMScoreAdj(in.Node.clampOOM(int(res.OomScoreAdj)))}, nil
}

func withOOMScoreAdj(v int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &v
		return nil
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

func withResources(res *runtime.LinuxContainerResources, node nodeCgroups) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		applyResources(s.Linux.Resources, res, node)
		return nil
	}
}

// podResources is what the whole pod may use, as the kubelet sizes its pod
// cgroup: the sum of its containers' resources plus the sandbox overhead.
// Only limits the pod has are set; nil when it has none.
func podResources(l *runtime.LinuxPodSandboxConfig) *runtime.LinuxContainerResources {
	res, over := l.GetResources(), l.GetOverhead()
	if res == nil {
		return nil
	}
	out := &runtime.LinuxContainerResources{CpuShares: res.CpuShares, CpusetCpus: res.CpusetCpus, CpusetMems: res.CpusetMems}
	if out.CpuShares > 0 {
		out.CpuShares += over.GetCpuShares()
	}
	if res.CpuQuota > 0 {
		out.CpuPeriod, out.CpuQuota = res.CpuPeriod, res.CpuQuota
		if over.GetCpuQuota() > 0 && over.GetCpuPeriod() == res.CpuPeriod {
			out.CpuQuota += over.GetCpuQuota()
		}
	}
	if res.MemoryLimitInBytes > 0 {
		out.MemoryLimitInBytes = res.MemoryLimitInBytes + max(over.GetMemoryLimitInBytes(), 0)
	}
	return out
}

// applyResources copies CRI resources into an OCI resources block, leaving
// out what the node's cgroups can't do (as containerd's CRI does): swap
// without swap accounting, hugepage limits without the hugetlb controller.
// Where swap can be limited and none is asked for, memory+swap equals the
// memory limit, so a container doesn't swap.
func applyResources(lr *specs.LinuxResources, res *runtime.LinuxContainerResources, node nodeCgroups) {
	if lr.CPU == nil {
		lr.CPU = &specs.LinuxCPU{}
	}
	if lr.Memory == nil {
		lr.Memory = &specs.LinuxMemory{}
	}
	if res.CpuPeriod != 0 {
		p := uint64(res.CpuPeriod)
		lr.CPU.Period = &p
	}
	if res.CpuQuota != 0 {
		q := res.CpuQuota
		lr.CPU.Quota = &q
	}
	if res.CpuShares != 0 {
		s := uint64(res.CpuShares)
		lr.CPU.Shares = &s
	}
	if res.CpusetCpus != "" {
		lr.CPU.Cpus = res.CpusetCpus
	}
	if res.CpusetMems != "" {
		lr.CPU.Mems = res.CpusetMems
	}
	if res.MemoryLimitInBytes != 0 {
		l := res.MemoryLimitInBytes
		lr.Memory.Limit = &l
		if res.MemorySwapLimitInBytes == 0 && node.Swap {
			lr.Memory.Swap = &l
		}
	}
	if res.MemorySwapLimitInBytes != 0 && node.Swap {
		l := res.MemorySwapLimitInBytes
		lr.Memory.Swap = &l
	}
	if node.Hugetlb {
		lr.HugepageLimits = nil
		for _, h := range res.HugepageLimits {
			lr.HugepageLimits = append(lr.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
		}
	}
	if len(res.Unified) > 0 {
		if lr.Unified == nil {
			lr.Unified = map[string]string{}
		}
		for k, v := range res.Unified {
			lr.Unified[k] = v
		}
	}
}
