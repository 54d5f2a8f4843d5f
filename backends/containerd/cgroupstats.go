package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/crimux/crimux/backends"
)

// A runc container's processes run in a cgroup of their own on the node,
// whose counters are files. Its stats are read from them here, as runc's
// shim reads them, instead of asking containerd to ask the shim: with
// hundreds of pods, a stats list otherwise waits on containerd and each
// shim in turn. As the shim does, crimux finds the cgroup from the task's
// process when the task is created (/proc/<pid>/cgroup, before the
// container's own process runs: it may move itself into a child cgroup
// later, as systemd does) and keeps it, so that a pid reused after the exit
// is never read; v2 on a node that runs cgroup v2 only, v1 otherwise
// (hybrid included); the same counters, converted the same way. A task
// crimux adopted after a restart has no cgroup kept and asks its shim.

// The keys read from the stat files, in the order their values are taken.
var (
	v1CPUAcctKeys = []string{"user", "system"}
	v1CPUKeys     = []string{"nr_periods", "nr_throttled", "throttled_time"}
	v1MemKeys     = []string{"total_cache", "total_rss", "total_mapped_file", "total_pgfault", "total_pgmajfault", "total_inactive_file"}
	v2CPUKeys     = []string{"usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"}
	v2MemKeys     = []string{"file", "anon", "file_mapped", "pgfault", "pgmajfault", "inactive_file", "kernel_stack", "slab"}
	v2EventKeys   = []string{"max"}
)

// cgroupRoot is where the node's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on Linux, as the cgroups
// library and runc's shim take it).
const userHZ = 100

// cgroupDirs are the dirs of pid's cgroups, by v1 controller, and "" for
// its cgroup v2 (a hybrid node has both). A cgroup outside crimux's own
// cgroup namespace (its path climbs with "..") is left out.
func cgroupDirs(pid uint32) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	return parseCgroupFile(b), nil
}

// parseCgroupFile is cgroupDirs from a /proc/<pid>/cgroup file.
func parseCgroupFile(b []byte) map[string]string {
	paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !filepath.IsAbs(parts[2]) || slices.Contains(strings.Split(parts[2], "/"), "..") {
			continue
		}
		if parts[1] == "" {
			paths[""] = filepath.Join(cgroupRoot, parts[2])
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = filepath.Join(cgroupRoot, parts[1], parts[2])
		}
	}
	return paths
}

// readCgroupUsage reads the counters of the cgroup whose dirs are paths
// (cgroupDirs).
func readCgroupUsage(paths map[string]string, unified bool) (backends.Usage, error) {
	if unified {
		if paths[""] == "" {
			return backends.Usage{}, errors.New("no cgroup v2 dir")
		}
		return readCgroupV2(paths[""])
	}
	return readCgroupV1(paths)
}

func readCgroupV1(paths map[string]string) (backends.Usage, error) {
	var u backends.Usage
	acct, mem := paths["cpuacct"], paths["memory"]
	if acct == "" || mem == "" {
		return u, errors.New("no cpuacct or memory cgroup")
	}
	var err error
	if u.CPUUsageNs, err = readUint(filepath.Join(acct, "cpuacct.usage")); err != nil {
		return u, err
	}
	if err := readKV(filepath.Join(acct, "cpuacct.stat"), v1CPUAcctKeys, &u.CPUUserNs, &u.CPUSystemNs); err != nil {
		return u, err
	}
	u.CPUUserNs, u.CPUSystemNs = u.CPUUserNs*1e9/userHZ, u.CPUSystemNs*1e9/userHZ
	if cpu := paths["cpu"]; cpu != "" {
		_ = readKV(filepath.Join(cpu, "cpu.stat"), v1CPUKeys, &u.CFSPeriods, &u.CFSThrottledPeriods, &u.CFSThrottledNs)
	}
	var inactive uint64
	if err := readKV(filepath.Join(mem, "memory.stat"), v1MemKeys, &u.MemCache, &u.MemRSS, &u.MemMappedFile, &u.PgFault, &u.PgMajFault, &inactive); err != nil {
		return u, err
	}
	if u.MemUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	u.MemMaxUsage, _ = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	u.MemFailcnt, _ = readUint(filepath.Join(mem, "memory.failcnt"))
	if inactive < u.MemUsage {
		u.MemWorkingSet = u.MemUsage - inactive
	}
	if sw, err := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes")); err == nil && sw > u.MemUsage {
		u.MemSwap = sw - u.MemUsage
	}
	u.MemKernel, _ = readUint(filepath.Join(mem, "memory.kmem.usage_in_bytes"))
	if pids := paths["pids"]; pids != "" {
		u.Processes, _ = readUint(filepath.Join(pids, "pids.current"))
		u.ThreadsMax, _ = readUint(filepath.Join(pids, "pids.max"))
	}
	return u, nil
}

func readCgroupV2(dir string) (backends.Usage, error) {
	var u backends.Usage
	if err := readKV(filepath.Join(dir, "cpu.stat"), v2CPUKeys, &u.CPUUsageNs, &u.CPUUserNs, &u.CPUSystemNs, &u.CFSPeriods, &u.CFSThrottledPeriods, &u.CFSThrottledNs); err != nil {
		return u, err
	}
	u.CPUUsageNs, u.CPUUserNs, u.CPUSystemNs, u.CFSThrottledNs = u.CPUUsageNs*1000, u.CPUUserNs*1000, u.CPUSystemNs*1000, u.CFSThrottledNs*1000
	var inactive, stack, slab uint64
	if err := readKV(filepath.Join(dir, "memory.stat"), v2MemKeys, &u.MemCache, &u.MemRSS, &u.MemMappedFile, &u.PgFault, &u.PgMajFault, &inactive, &stack, &slab); err != nil {
		return u, err
	}
	u.MemKernel = stack + slab
	var err error
	if u.MemUsage, err = readUint(filepath.Join(dir, "memory.current")); err != nil {
		return u, err
	}
	u.MemMaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
	u.MemSwap, _ = readUint(filepath.Join(dir, "memory.swap.current"))
	if inactive < u.MemUsage {
		u.MemWorkingSet = u.MemUsage - inactive
	}
	_ = readKV(filepath.Join(dir, "memory.events"), v2EventKeys, &u.MemFailcnt)
	u.Processes, _ = readUint(filepath.Join(dir, "pids.current"))
	u.ThreadsMax, _ = readUint(filepath.Join(dir, "pids.max"))
	return u, nil
}

// readUint reads a file of one number; "max" (no limit) is 0.
func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKV reads the values of the given keys from a file of "key value"
// lines (a key it lacks is 0), into vals in the keys' order.
func readKV(p string, keys []string, vals ...*uint64) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		for i, key := range keys {
			if string(k) == key {
				*vals[i], _ = strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
				break
			}
		}
	}
	return nil
}
