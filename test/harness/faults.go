package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
)

// Race reports whether crimux is built with the race detector
// (CRIMUX_TEST_RACE=1).
func Race() bool { return os.Getenv("CRIMUX_TEST_RACE") == "1" }

// ephemeralPorts is the kernel's range of local ports for outgoing
// connections (net.ipv4.ip_local_port_range).
func ephemeralPorts() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range: %q", b)
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	return lo, hi, err
}

// freeLoopback is a free port on 127.0.0.1 for a listener crimux keeps
// across restarts, outside the ephemeral range: while crimux is down, the
// kernel may give a port from that range to any outgoing connection or any
// listener on port 0 on the node, and crimux's restart then can't listen.
// It is one of 20000-29999 (below the usual range, away from well-known
// ports and Kubernetes' NodePorts), else above the range; a port the kernel
// picks only if neither has room.
func freeLoopback() (string, error) {
	if lo, hi, err := ephemeralPorts(); err == nil {
		first, last := 20000, min(lo, 30000)-1
		if last-first < 1000 {
			first, last = hi+1, 65535
		}
		if n := last - first + 1; n > 1000 {
			start := rand.IntN(n)
			for i := range 200 {
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(first+(start+i)%n))
				if l, err := net.Listen("tcp", addr); err == nil {
					l.Close()
					return addr, nil
				}
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// CrimuxAlive reports whether the crimux this env started still runs.
func (e *Env) CrimuxAlive() bool {
	return e.crimux != nil && e.crimux.Process != nil && e.crimux.Process.Signal(syscall.Signal(0)) == nil
}

// WaitCrimuxGone waits for crimux to die (a fault point killed it).
func (e *Env) WaitCrimuxGone(d time.Duration) error {
	deadline := time.Now().Add(d)
	for e.CrimuxAlive() {
		if time.Now().After(deadline) {
			return errors.New("crimux is still running")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.crimux = nil
	return nil
}

// KillContainerd kills the run's containerd with SIGKILL (its shims, and so
// the containers, live on).
func (e *Env) KillContainerd() {
	if e.ctrd != nil && e.ctrd.Process != nil {
		_ = e.ctrd.Process.Kill()
		_, _ = e.ctrd.Process.Wait()
	}
	e.ctrd = nil
}

// RestartContainerd starts the run's containerd again, as it was.
func (e *Env) RestartContainerd() error {
	if e.ctrd != nil {
		return errors.New("containerd is running")
	}
	return e.startContainerd(e.BinDir)
}

// SignalContainerd sends sig to the run's containerd (SIGSTOP, SIGCONT).
func (e *Env) SignalContainerd(sig syscall.Signal) error {
	if e.ctrd == nil || e.ctrd.Process == nil {
		return errors.New("containerd is not running")
	}
	return signalProcess(e.ctrd.Process, sig)
}

// signalProcess sends sig to p; a SIGSTOP returns once each of p's threads
// is stopped: kill returns as soon as the signal is queued, and a thread
// busy on the other core stops a moment later, while a test may already be
// asking the process to answer.
func signalProcess(p *os.Process, sig syscall.Signal) error {
	if err := p.Signal(sig); err != nil || sig != syscall.SIGSTOP {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allThreadsStopped(p.Pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d not stopped 10s after SIGSTOP", p.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// allThreadsStopped: every thread of pid is in state T (stopped).
func allThreadsStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			return false
		}
		if f := StatFields(string(b)); len(f) == 0 || f[0] != "T" {
			return false
		}
	}
	return true
}

// RaceReports returns the race detector's reports in crimux's log.
func (e *Env) RaceReports() []string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "crimux.log"))
	var out []string
	for _, part := range strings.Split(string(b), "==================\n")[1:] {
		if strings.HasPrefix(part, "WARNING: DATA RACE") {
			out = append(out, part)
		}
	}
	return out
}

// Snapshot is what exists on the node for the run: everything a leak
// would leave, and crimux's own use of the process.
type Snapshot struct {
	Sets map[string][]string
	// Crimux's goroutines, open fds, threads and RSS (KiB).
	Goroutines, FDs, Threads, RSSKiB int
}

// TakeSnapshot lists netns and userns pins, mounts under the run's dir,
// containerd containers, tasks, snapshots and leases in crimux's
// namespace, shims and runsc processes of the run, allocated pod IPs and
// CNI NAT rules, and reads crimux's goroutines (its profiling endpoint),
// fds, threads and RSS.
func (e *Env) TakeSnapshot(ctx context.Context) (Snapshot, error) {
	s := Snapshot{Sets: map[string][]string{}}
	add := func(k, v string) { s.Sets[k] = append(s.Sets[k], v) }
	for _, d := range []string{"netns", "userns", "pods", "imagevols"} {
		ents, _ := os.ReadDir(filepath.Join(e.Dir, "state", d))
		for _, ent := range ents {
			add("state/"+d, ent.Name())
		}
	}
	for _, m := range MountsUnder(e.Dir) {
		// runsc keeps one empty netns mounted per root, by design (README).
		if !strings.HasSuffix(m, "/null-netns") {
			add("mounts", m)
		}
	}
	c, err := client.New(e.CtrdSock, client.WithDefaultNamespace("crimux-test"))
	if err != nil {
		return s, err
	}
	defer c.Close()
	conts, err := c.Containers(ctx)
	if err != nil {
		return s, err
	}
	for _, ct := range conts {
		add("containerd containers", ct.ID())
		if _, err := ct.Task(ctx, nil); err == nil {
			add("containerd tasks", ct.ID())
		}
	}
	ls, err := c.LeasesService().List(ctx)
	if err != nil {
		return s, err
	}
	// crimux keeps up to 2 leases made ahead for container creation
	// (backends/containerd/leases.go): those are its steady state, not a
	// leak; more than that is.
	var ahead []string
	for _, l := range ls {
		if l.Labels["io.crimux/lease"] == "container-create" {
			ahead = append(ahead, l.ID)
			continue
		}
		add("containerd leases", l.ID)
	}
	if len(ahead) > 2 {
		for _, id := range ahead {
			add("containerd leases", id+" (one of more than 2 made ahead)")
		}
	}
	sbs, err := c.SandboxStore().List(ctx)
	if err != nil {
		return s, err
	}
	for _, sb := range sbs {
		add("containerd sandbox store", sb.ID)
	}
	if err := c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted { // image layers stay; containers' and views don't
			add("snapshots", info.Name)
		}
		return nil
	}); err != nil {
		return s, err
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), e.Dir) {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		switch {
		case strings.Contains(cmd, "containerd-shim"):
			add("shims", strings.Fields(cmd)[0]+" pid "+p.Name())
		case strings.Contains(cmd, "runsc"):
			add("runsc processes", "pid "+p.Name())
		}
	}
	_ = filepath.WalkDir(filepath.Join(e.Dir, "ipam"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && net.ParseIP(d.Name()) != nil {
			add("pod IPs", d.Name())
		}
		return nil
	})
	if out, err := exec.Command("iptables", "-t", "nat", "-S").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "CNI-") && strings.Contains(l, e.RunID) || strings.Contains(l, "CNI-DN-") || strings.Contains(l, "CNI-HOSTPORT-DNAT -m comment") {
				add("NAT rules", l)
			}
		}
	}
	for k := range s.Sets {
		sort.Strings(s.Sets[k])
	}
	if e.crimux != nil && e.crimux.Process != nil {
		pid := e.crimux.Process.Pid
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		s.FDs = len(fds)
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				if len(fields) >= 2 && fields[0] == "Threads:" {
					s.Threads, _ = strconv.Atoi(fields[1])
				}
				if len(fields) >= 2 && fields[0] == "VmRSS:" {
					s.RSSKiB, _ = strconv.Atoi(fields[1])
				}
			}
			f.Close()
		}
		s.Goroutines, _ = e.Goroutines()
	}
	return s, nil
}

// Goroutines reads crimux's goroutine count from its profiling endpoint.
func (e *Env) Goroutines() (int, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + e.DebugAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(io.LimitReader(resp.Body, 4096)).ReadString('\n')
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &n); err != nil {
		return 0, fmt.Errorf("parse %q: %w", line, err)
	}
	return n, nil
}

// Leaks lists what after has that before had not, set by set.
func Leaks(before, after Snapshot) []string {
	var out []string
	keys := make([]string, 0, len(after.Sets))
	for k := range after.Sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		had := map[string]bool{}
		for _, v := range before.Sets[k] {
			had[v] = true
		}
		for _, v := range after.Sets[k] {
			if !had[v] {
				out = append(out, k+": "+v)
			}
		}
	}
	return out
}
