package test

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	cgv1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container over its memory limit is OOM-killed and reported as OOMKilled.
// Under gVisor crimux enforces the container's own limit (the sentry does
// not); the sandbox and a sibling container live on.
func TestOOMKilled(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "oom")
	podID := runPod(t, pod)
	sibling := startContainer(t, podID, pod, ctrConfig("sibling", "sleep", "3600"))
	c := ctrConfig("hog", "tail", "/dev/zero")
	c.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, MemorySwapLimitInBytes: 32 << 20}
	id := startContainer(t, podID, pod, c)
	st := waitExited(t, id)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("hog: reason %q exit %d", st.Reason, st.ExitCode)
	}
	if s, err := env.Runtime.ContainerStatus(ctx(t), sibling, false); err != nil || s.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("sibling after the OOM kill: %v %v", s.GetStatus().GetState(), err)
	}
	if s, err := env.Runtime.PodSandboxStatus(ctx(t), podID, false); err != nil || s.GetStatus().GetState() != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after the OOM kill: %v %v", s.GetStatus().GetState(), err)
	}
}

// A gVisor sandbox's cgroup carries the pod's resources (the sentry's memory
// is all charged there), and a pod over them is OOM-killed as a whole.
func TestGvisorPodMemoryLimit(t *testing.T) {
	needEnv(t)
	if !isGvisor() {
		t.Skip("runc pods are limited by the kubelet's pod cgroup and each container's own")
	}
	pullBusybox(t)
	pod := podConfig(t, "podoom")
	pod.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 200 << 20}
	podID := runPod(t, pod)
	limit, err := sandboxCgroupFile(t, podID, "memory", "memory.limit_in_bytes", "memory.max")
	if err != nil {
		t.Fatal(err)
	}
	if limit != fmt.Sprint(200<<20) {
		t.Errorf("sandbox cgroup memory limit %q, want %d", limit, 200<<20)
	}
	// A resize reaches the sandbox's cgroup: resources plus overhead.
	if _, err := env.Runtime.UpdatePodSandboxResources(ctx(t), &runtime.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID,
		Resources:    &runtime.LinuxContainerResources{MemoryLimitInBytes: 150 << 20},
		Overhead:     &runtime.LinuxContainerResources{MemoryLimitInBytes: 10 << 20},
	}); err != nil {
		t.Fatal(err)
	}
	if limit, err = sandboxCgroupFile(t, podID, "memory", "memory.limit_in_bytes", "memory.max"); err != nil || limit != fmt.Sprint(160<<20) {
		t.Errorf("sandbox cgroup memory limit after the resize %q (%v), want %d", limit, err, 160<<20)
	}
	// No limit of its own: the container grows until the sandbox is full.
	id := startContainer(t, podID, pod, ctrConfig("hog", "tail", "/dev/zero"))
	st := waitExited(t, id)
	if st.Reason != "OOMKilled" {
		t.Errorf("hog in a full sandbox: reason %q exit %d", st.Reason, st.ExitCode)
	}
}

// Pod stats add up the containers and count the pod's traffic.
func TestPodSandboxStats(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "pstats")
	podID := runPod(t, pod)
	startContainer(t, podID, pod, ctrConfig("a", "sleep", "3600"))
	startContainer(t, podID, pod, ctrConfig("b", "sleep", "3600"))
	ip := podIP(t, podID)
	_, _ = httpGet("http://" + ip + ":1/") // some traffic (refused, but counted)
	st, err := env.Runtime.PodSandboxStats(ctx(t), podID)
	if err != nil {
		t.Fatal(err)
	}
	lin := st.GetLinux()
	if st.Attributes.Id != podID || len(lin.GetContainers()) != 2 || lin.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("pod stats: %+v", st)
	}
	if lin.GetNetwork().GetDefaultInterface().GetName() != "eth0" || lin.GetNetwork().GetDefaultInterface().GetRxBytes().GetValue() == 0 {
		t.Errorf("pod network stats: %+v", lin.GetNetwork())
	}
	list, err := env.Runtime.ListPodSandboxStats(ctx(t), &runtime.PodSandboxStatsFilter{Id: podID})
	if err != nil || len(list) != 1 {
		t.Errorf("list pod stats: %v %v", list, err)
	}
}

// GetContainerEvents streams created, started, stopped and deleted events.
func TestContainerEvents(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := rawClient(t).GetContainerEvents(c, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "events")
	podID := runPod(t, pod)
	id := startContainer(t, podID, pod, ctrConfig("e", "sh", "-c", "exit 0"))
	waitExited(t, id)
	if err := env.Runtime.RemoveContainer(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	want := []runtime.ContainerEventType{
		runtime.ContainerEventType_CONTAINER_CREATED_EVENT, runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var got []runtime.ContainerEventType
	for len(got) < len(want) {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if ev.ContainerId != id {
			continue
		}
		if ev.PodSandboxStatus.GetId() != podID {
			t.Errorf("event without its pod status: %+v", ev)
		}
		got = append(got, ev.ContainerEventType)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

// The streaming list calls return what the unary ones do.
func TestStreamingLists(t *testing.T) {
	needEnv(t)
	pod := podConfig(t, "stream")
	podID := runPod(t, pod)
	s, err := rawClient(t).StreamPodSandboxes(ctx(t), &runtime.StreamPodSandboxesRequest{Filter: &runtime.PodSandboxFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil || len(resp.PodSandboxes) != 1 || resp.PodSandboxes[0].Id != podID {
		t.Fatalf("stream pods: %v %v", resp, err)
	}
	is, err := rawImageClient(t).StreamImages(ctx(t), &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := is.Recv(); err != nil || len(r.Images) == 0 {
		t.Fatalf("stream images: %v %v", r, err)
	}
}

// UpdatePodSandboxResources is recorded for every handler (verbose status
// shows it); TestGvisorPodMemoryLimit checks where gVisor applies it.
func TestUpdatePodSandboxResources(t *testing.T) {
	needEnv(t)
	pod := podConfig(t, "resize")
	podID := runPod(t, pod)
	if _, err := env.Runtime.UpdatePodSandboxResources(ctx(t), &runtime.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID,
		Resources:    &runtime.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 300 << 20},
	}); err != nil {
		t.Fatal(err)
	}
	st, err := env.Runtime.PodSandboxStatus(ctx(t), podID, true)
	if err != nil {
		t.Fatal(err)
	}
	if info := st.GetInfo()["info"]; !strings.Contains(info, fmt.Sprintf(`"podResources":{"cpu_shares":512,"memory_limit_in_bytes":%d}`, 300<<20)) {
		t.Errorf("verbose status after the resize: %s", info)
	}
	if _, err := env.Runtime.UpdatePodSandboxResources(ctx(t), &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: podID}); err == nil {
		t.Error("an empty resize was accepted")
	}
}

// A container's CPU and memory in ContainerStats are the counters its
// shim reports (crimux reads a runc container's from its cgroup itself):
// the CPU time lies between two readings through the shim around it, and
// the memory of a container that only spins is the shim's, within the
// kernel's per-CPU charge batches.
func TestContainerStatsAreTheShims(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "cstats")
	podID := runPod(t, pod)
	cid := startContainer(t, podID, pod, ctrConfig("spin", "sh", "-c", "while :; do :; done"))
	c := ctrdClient(t)
	shim := func() (cpu, mem uint64) {
		t.Helper()
		m, err := ctrdTask(t, c, cid).Metrics(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		data, err := typeurl.UnmarshalAny(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch s := data.(type) {
		case *cgv1.Metrics:
			return s.GetCPU().GetUsage().GetTotal(), s.GetMemory().GetUsage().GetUsage()
		case *cgv2.Metrics:
			return s.GetCPU().GetUsageUsec() * 1000, s.GetMemory().GetUsage()
		}
		t.Fatalf("metrics of type %T", data)
		return 0, 0
	}
	for range 3 {
		cpuBefore, memBefore := shim()
		st, err := env.Runtime.ContainerStats(ctx(t), cid)
		if err != nil {
			t.Fatal(err)
		}
		cpuAfter, memAfter := shim()
		cpu, mem := st.GetCpu().GetUsageCoreNanoSeconds().GetValue(), st.GetMemory().GetUsageBytes().GetValue()
		if cpu < cpuBefore || cpu > cpuAfter {
			t.Errorf("CPU %d ns, the shim's around it %d and %d", cpu, cpuBefore, cpuAfter)
		}
		// Both read the same counter (cgroup v1 memory.usage_in_bytes,
		// v2 memory.current), but the kernel charges memory to a cgroup in
		// per-CPU batches (64 pages each), so the counter moves by a batch
		// per CPU between reads with nothing allocated; seen here: crimux
		// 400 KiB between the shim's 660 and 656 KiB.
		fuzz := uint64(64 * os.Getpagesize() * goruntime.NumCPU())
		if mem+fuzz < min(memBefore, memAfter) || mem > max(memBefore, memAfter)+fuzz {
			t.Errorf("memory %d bytes, the shim's around it %d and %d (give or take %d for the kernel's per-CPU charge batches)", mem, memBefore, memAfter, fuzz)
		}
	}
}
