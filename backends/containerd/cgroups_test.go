package containerd

import (
	"errors"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

func TestCheckUnified(t *testing.T) {
	v1 := nodeCgroups{}
	v2 := nodeCgroups{Unified: true, Controllers: map[string]bool{"cpu": true, "memory": true, "pids": true}}
	for _, tc := range []struct {
		desc    string
		node    nodeCgroups
		unified map[string]string
		ok      bool
	}{
		{"none on v1", v1, nil, true},
		{"any on v1", v1, map[string]string{"memory.high": "max"}, false},
		{"memory on v2", v2, map[string]string{"memory.high": "max", "cpu.weight": "100"}, true},
		{"missing controller on v2", v2, map[string]string{"rdma.max": "mlx4_0 hca_handle=2"}, false},
		{"hugetlb without the controller", v2, map[string]string{"hugetlb.2MB.max": "0"}, false},
		{"cgroup's own settings", v2, map[string]string{"cgroup.max.depth": "10"}, true},
		{"moving processes", v2, map[string]string{"cgroup.procs": "1"}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := checkUnified(&runtime.LinuxContainerResources{Unified: tc.unified}, tc.node)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, backends.ErrInvalid)) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestApplyResourcesNodeCgroups(t *testing.T) {
	res := &runtime.LinuxContainerResources{
		MemoryLimitInBytes: 100,
		HugepageLimits:     []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
	}
	for _, tc := range []struct {
		desc      string
		node      nodeCgroups
		swap      int64 // 0: unset
		wantSwap  int64 // 0: unset
		wantPages int
	}{
		{desc: "no swap accounting, no hugetlb", node: nodeCgroups{}, swap: 200},
		{desc: "swap accounting: swap defaults to the memory limit", node: nodeCgroups{Swap: true}, wantSwap: 100},
		{desc: "swap accounting: asked-for swap", node: nodeCgroups{Swap: true}, swap: 200, wantSwap: 200},
		{desc: "hugetlb controller", node: nodeCgroups{Hugetlb: true}, wantPages: 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := proto.Clone(res).(*runtime.LinuxContainerResources)
			r.MemorySwapLimitInBytes = tc.swap
			var lr specs.LinuxResources
			applyResources(&lr, r, tc.node)
			gotSwap := int64(0)
			if lr.Memory.Swap != nil {
				gotSwap = *lr.Memory.Swap
			}
			if gotSwap != tc.wantSwap || len(lr.HugepageLimits) != tc.wantPages || *lr.Memory.Limit != 100 {
				t.Fatalf("swap %d (want %d), %d hugepage limits (want %d), memory %d", gotSwap, tc.wantSwap, len(lr.HugepageLimits), tc.wantPages, *lr.Memory.Limit)
			}
		})
	}
}

func TestImageVolumeContainer(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if got, ok := imageVolumeContainer(imageVolumeKey(id, 12)); !ok || got != id {
		t.Fatalf("container of %q: %q %v", imageVolumeKey(id, 12), got, ok)
	}
	for _, k := range []string{"other", "crimux-imagevol-", "crimux-imagevol--1", id} {
		if got, ok := imageVolumeContainer(k); ok {
			t.Errorf("%q parsed as a volume of %q", k, got)
		}
	}
}

func TestPullLocksDontLeak(t *testing.T) {
	s := &Images{pulls: map[string]*refLock{}}
	unlockA := s.lockRef("a")
	done := make(chan struct{})
	go func() {
		unlock := s.lockRef("a") // waits for the first holder
		unlock()
		close(done)
	}()
	s.lockRef("b")()
	unlockA()
	<-done
	if n := s.pullLocks(); n != 0 {
		t.Fatalf("%d pull locks left after every pull ended", n)
	}
}
