package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A last line without a newline is a partial (P) entry, as containerd's CRI
// writes it: the kubelet turns an F entry into a line with a newline, which
// changes a termination message read from the log.
func TestLastLineWithoutNewline(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "partial")
	podID := runPod(t, pod)
	id := startContainer(t, podID, pod, ctrConfig("p", "printf", `line1\nDONE`))
	waitExited(t, id)
	var lines [][3]string
	eventually(t, 10*time.Second, "both log entries", func() error {
		lines = logLines(t, filepath.Join(pod.LogDirectory, "p.log"))
		if len(lines) < 2 {
			return fmt.Errorf("log entries %v", lines)
		}
		return nil
	})
	want := [][3]string{{"stdout", "F", "line1"}, {"stdout", "P", "DONE"}}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("log entries %v, want %v", lines, want)
	}
}

// hugepageSizes are the page sizes the kubelet sends limits for: one per
// /sys/kernel/mm/hugepages/hugepages-<N>kB, as "2MB", "1GB".
func hugepageSizes(t *testing.T) []string {
	ents, _ := os.ReadDir("/sys/kernel/mm/hugepages")
	var out []string
	for _, e := range ents {
		m := regexp.MustCompile(`^hugepages-(\d+)kB$`).FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		kb, _ := strconv.Atoi(m[1])
		switch {
		case kb >= 1<<20 && kb%(1<<20) == 0:
			out = append(out, fmt.Sprintf("%dGB", kb>>20))
		case kb >= 1<<10 && kb%(1<<10) == 0:
			out = append(out, fmt.Sprintf("%dMB", kb>>10))
		default:
			out = append(out, fmt.Sprintf("%dKB", kb))
		}
	}
	return out
}

// The resources the kubelet sends for every container run on this node,
// whatever its cgroups lack: hugepage limits for each page size (this node
// has no hugetlb controller), a swap limit, CPU and memory limits.
func TestKubeletResourcesRun(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "kres")
	pod.Linux.Resources = &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 100000, CpuShares: 1024, MemoryLimitInBytes: 512 << 20}
	podID := runPod(t, pod)
	c := ctrConfig("c", "sleep", "3600")
	res := &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20, OomScoreAdj: 969, MemorySwapLimitInBytes: 128 << 20}
	for _, size := range hugepageSizes(t) {
		res.HugepageLimits = append(res.HugepageLimits, &runtime.HugepageLimit{PageSize: size, Limit: 0})
	}
	if len(res.HugepageLimits) == 0 {
		t.Log("this node has no hugepage sizes; the kubelet would send no hugepage limits")
	}
	c.Linux.Resources = res
	id := startContainer(t, podID, pod, c)
	resp, err := rawExecSync(t, id, []string{"true"}, 10)
	if err != nil || resp.ExitCode != 0 {
		t.Fatalf("exec: %v %v", resp, err)
	}
	// Updating them the way the kubelet does works too.
	res.CpuQuota = 80000
	if err := env.Runtime.UpdateContainerResources(ctx(t), id, &runtime.ContainerResources{Linux: res}); err != nil {
		t.Errorf("UpdateContainerResources with hugepage limits: %v", err)
	}
}

// RuntimeVersion is a semantic version (the kubelet parses it).
func TestRuntimeVersionSemver(t *testing.T) {
	needEnv(t)
	v, err := env.Runtime.Version(ctx(t), "v1")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	if v.RuntimeName != "crimux" || !re.MatchString(v.RuntimeVersion) {
		t.Errorf("runtime %q version %q is not a semantic version", v.RuntimeName, v.RuntimeVersion)
	}
	if !strings.Contains(v.RuntimeVersion, "+") {
		t.Errorf("runtime version %q carries no commit", v.RuntimeVersion)
	}
}
