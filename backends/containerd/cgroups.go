package containerd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// nodeCgroups is what this node's cgroups can do, detected once at start:
// a runtime asked to set what the node has no controller for fails the
// container ("cannot set hugetlb limit"), so such settings are left out or
// refused, as containerd's CRI does.
type nodeCgroups struct {
	// Unified: the node runs cgroup v2 only (runc uses it).
	Unified bool
	// Swap: memory+swap can be limited (v1 memsw accounting, v2 memory.swap.max).
	Swap bool
	// Hugetlb: the hugetlb controller exists.
	Hugetlb bool
	// Controllers are the cgroup v2 controllers (Unified only).
	Controllers map[string]bool
}

// checkUnified refuses unified (cgroup v2 file) resources the node can't
// take: any on cgroup v1, where runc fails the container at start, and on
// v2 a file of a controller the node doesn't have, or one of cgroup's own
// files that place processes or controllers.
func checkUnified(res *runtime.LinuxContainerResources, node nodeCgroups) error {
	for _, k := range sortedKeys(res.GetUnified()) {
		if !node.Unified {
			return fmt.Errorf("%w: resources.unified[%q]: this node's cgroups are v1; unified resources need cgroup v2", backends.ErrInvalid, k)
		}
		ctrl, _, _ := strings.Cut(k, ".")
		switch {
		case ctrl == "cgroup":
			switch k {
			case "cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.type", "cgroup.kill", "cgroup.freeze":
				return fmt.Errorf("%w: resources.unified[%q]: not a resource", backends.ErrInvalid, k)
			}
		case !node.Controllers[ctrl]:
			return fmt.Errorf("%w: resources.unified[%q]: this node has no %s cgroup controller", backends.ErrInvalid, k, ctrl)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// detectCgroups reads the node's cgroup setup.
func detectCgroups() nodeCgroups {
	var n nodeCgroups
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		n.Unified = true
	}
	if n.Unified {
		own := ownCgroupV2()
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup", own, "memory.swap.max"))
		n.Swap = err == nil
		ctrls, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		n.Controllers = map[string]bool{}
		for _, c := range strings.Fields(string(ctrls)) {
			n.Controllers[c] = true
		}
		n.Hugetlb = n.Controllers["hugetlb"]
		return n
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	n.Swap = err == nil
	_, err = os.Stat("/sys/fs/cgroup/hugetlb")
	n.Hugetlb = err == nil && v1Controller("hugetlb")
	return n
}

// ownCgroupV2 is this process's cgroup v2 path ("0::/path").
func ownCgroupV2() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return "/"
}

// v1Controller reports whether a cgroup v1 controller is enabled
// (/proc/cgroups lists it with enabled 1).
func v1Controller(name string) bool {
	f, err := os.Open("/proc/cgroups")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 4 && fields[0] == name {
			return fields[3] == "1"
		}
	}
	return false
}
