package containerd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/crimux/crimux/backends"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The counters are read and converted as runc's shim reports them and
// cgroupUsage converts those (cgroups v1: cpuacct.stat in USER_HZ ticks,
// working set = usage - total_inactive_file, swap = memsw - usage;
// v2: microseconds, working set = current - inactive_file); a missing
// optional file (no swap accounting, no pids controller) is zero.
func TestReadCgroupUsage(t *testing.T) {
	root := t.TempDir()
	acct, mem, pids := filepath.Join(root, "cpu,cpuacct/x"), filepath.Join(root, "memory/x"), filepath.Join(root, "pids/x")
	writeFiles(t, acct, map[string]string{
		"cpuacct.usage": "123456789\n", "cpuacct.stat": "user 150\nsystem 50\n",
		"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n",
	})
	writeFiles(t, mem, map[string]string{
		"memory.stat":           "cache 1\nrss 2\ntotal_cache 4096\ntotal_rss 8192\ntotal_mapped_file 512\ntotal_pgfault 7\ntotal_pgmajfault 1\ntotal_inactive_file 1000\n",
		"memory.usage_in_bytes": "20000\n", "memory.max_usage_in_bytes": "30000\n", "memory.failcnt": "3\n",
		"memory.memsw.usage_in_bytes": "25000\n",
	})
	writeFiles(t, pids, map[string]string{"pids.current": "4\n", "pids.max": "max\n"})
	got, err := readCgroupV1(map[string]string{"cpu": acct, "cpuacct": acct, "memory": mem, "pids": pids})
	if err != nil {
		t.Fatal(err)
	}
	want := backends.Usage{CPUUsageNs: 123456789, CPUUserNs: 1_500_000_000, CPUSystemNs: 500_000_000,
		CFSPeriods: 10, CFSThrottledPeriods: 2, CFSThrottledNs: 3000,
		MemCache: 4096, MemRSS: 8192, MemMappedFile: 512, PgFault: 7, PgMajFault: 1,
		MemUsage: 20000, MemMaxUsage: 30000, MemFailcnt: 3, MemWorkingSet: 19000, MemSwap: 5000, Processes: 4}
	if got != want {
		t.Errorf("v1:\n got %+v\nwant %+v", got, want)
	}
	if _, err := readCgroupV1(map[string]string{"memory": mem}); err == nil {
		t.Error("v1 without cpuacct: no error")
	}

	v2 := filepath.Join(root, "unified/x")
	writeFiles(t, v2, map[string]string{
		"cpu.stat":       "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
		"memory.stat":    "anon 8192\nfile 4096\nkernel_stack 100\nslab 200\nfile_mapped 512\ninactive_file 1000\npgfault 7\npgmajfault 1\n",
		"memory.current": "20000\n", "memory.events": "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
		"pids.current": "3\n", "pids.max": "100\n",
	})
	got, err = readCgroupV2(v2)
	if err != nil {
		t.Fatal(err)
	}
	want = backends.Usage{CPUUsageNs: 100_000, CPUUserNs: 60_000, CPUSystemNs: 40_000,
		CFSPeriods: 5, CFSThrottledPeriods: 1, CFSThrottledNs: 7000,
		MemCache: 4096, MemRSS: 8192, MemMappedFile: 512, PgFault: 7, PgMajFault: 1, MemKernel: 300,
		MemUsage: 20000, MemWorkingSet: 19000, MemFailcnt: 2, Processes: 3, ThreadsMax: 100}
	if got != want {
		t.Errorf("v2:\n got %+v\nwant %+v", got, want)
	}
}

// A process's cgroup dirs, by v1 controller (a joined hierarchy under its
// joined name) and "" for v2; a path from outside crimux's cgroup
// namespace is left out.
func TestParseCgroupFile(t *testing.T) {
	got := parseCgroupFile([]byte("12:name=systemd:/kubepods/pod1/c1\n4:cpu,cpuacct:/kubepods/pod1/c1\n3:memory:/../../escaped\n0::/kubepods/pod1/c1\n"))
	want := map[string]string{
		"name=systemd": "/sys/fs/cgroup/name=systemd/kubepods/pod1/c1",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1",
		"cpuacct":      "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1",
		"":             "/sys/fs/cgroup/kubepods/pod1/c1",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q: got %q, want %q", k, got[k], v)
		}
	}
}
