// Package harness starts what crimux's integration tests need on the real
// host: a containerd of its own (root, state and socket in the run's dir), an
// in-process registry with the test images and mirror configuration, a CNI
// network with a bridge unique to the run, and crimux itself; and it sweeps
// what a crashed earlier run left behind.
package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	internalapi "k8s.io/cri-api/pkg/apis"
	cri "k8s.io/cri-client/pkg"

	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/test/images"
)

// BaseDir holds one directory per run; a run's leftovers are swept from here.
const BaseDir = "/var/tmp/crimux-test"

// BridgePrefix starts the name of every bridge a test run makes.
const BridgePrefix = "crxt"

// CgroupPrefix starts the name of every top-level cgroup a test run makes
// (followed by the run's ID); the run's cleanup and the next run's sweep
// remove them.
const CgroupPrefix = "/crimux-test-"

// Env is one running test environment.
type Env struct {
	Dir     string
	RunID   string
	Bridge  string
	Subnet  string
	Gateway string
	Handler string
	// BinDir holds containerd, its shims, runc, runsc and crictl.
	BinDir    string
	Registry  *images.Registry
	CtrdSock  string
	Socket    string
	Config    string
	CrimuxBin string
	Runtime   internalapi.RuntimeService
	Image     internalapi.ImageManagerService
	// FaultControl is the control dir of the "cnifault" handler's plugin.
	FaultControl string
	// DebugAddr is crimux's profiling endpoint (host:port).
	DebugAddr string
	// MetricsAddr is crimux's Prometheus endpoint (host:port; /metrics).
	MetricsAddr string
	// Remote is the containerd CRI the "fwd" handler forwards to
	// (Options.Forward), with its handler of the same name as Handler's.
	Remote *ContainerdCRI

	ctrd    *exec.Cmd
	ctrdBin string
	crimux  *exec.Cmd
	logs    []string
}

// FwdHandler and FwdShortHandler are the handlers Options.Forward
// configures: the same remote, with a timeout of 2m and of 3s.
const (
	FwdHandler      = "fwd"
	FwdShortHandler = "fwd-short"
)

// Options choose what to start.
type Options struct {
	// RepoRoot is the crimux checkout (to build binaries).
	RepoRoot string
	// BinDir holds containerd, containerd-shim-runc-v2 (and crictl); empty = $GOPATH/bin.
	BinDir string
	// Handler is the handler tests use (empty = the default).
	Handler string
	// ExtraConfig is appended to crimux's config file.
	ExtraConfig string
	// ExtraImages pushes more images into the registry.
	ExtraImages func(reg *images.Registry) error
	// MirrorHosts are more registries to mirror to the local one.
	MirrorHosts []string
	// LogLevel is crimux's log level (default debug).
	LogLevel string
	// Release builds crimux as `make build` does: without the fault points
	// tests trigger (benchmarks measure the binary operators run).
	Release bool
	// Forward starts a containerd with its CRI plugin (Env.Remote) and
	// configures handler "fwd" (driver cri) to forward to it, asking it for
	// its handler named as Handler (runc when empty).
	Forward bool
	// WideSubnets gives the run's networks (crimux's and a containerd CRI's)
	// a /22 each instead of a /24: room for 1000 pods, not 250.
	WideSubnets bool
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start builds crimux, sweeps leftovers, and starts everything.
func Start(o Options) (_ *Env, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("integration tests need root (netns, mounts, cgroups)")
	}
	Sweep()
	id := randHex(3)
	e := &Env{RunID: id, Dir: filepath.Join(BaseDir, id), Bridge: BridgePrefix + id, Handler: o.Handler}
	defer func() {
		if retErr != nil {
			e.Stop()
		}
	}()
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "owner.pid"), []byte(ownerID(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	bin := o.BinDir
	if bin == "" {
		bin = filepath.Join(goEnv("GOPATH"), "bin")
	}
	e.BinDir = bin
	// Build crimux and the pause program.
	e.CrimuxBin = filepath.Join(e.Dir, "crimux")
	// As the Makefile builds it (the commit from git describe), with the
	// fault points tests trigger (internal/fault), and with the race
	// detector when CRIMUX_TEST_RACE=1.
	commit, _ := run(o.RepoRoot, nil, "git", "describe", "--tags", "--always", "--dirty")
	ldflags := "-X github.com/crimux/crimux/router.Commit=" + strings.TrimSpace(string(commit))
	args := []string{"build", "-tags", "crimux_fault", "-ldflags", ldflags, "-o", e.CrimuxBin}
	if o.Release {
		args = []string{"build", "-ldflags", ldflags, "-o", e.CrimuxBin}
	}
	if Race() {
		args = append(args, "-race")
	}
	if out, err := run(o.RepoRoot, nil, "go", append(args, "./cmd/crimux")...); err != nil {
		return nil, fmt.Errorf("build crimux: %v\n%s", err, out)
	}
	if out, err := run(o.RepoRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-ldflags", "-s -w", "-o", filepath.Join(e.Dir, "crimux-pause"), "./cmd/crimux-pause"); err != nil {
		return nil, fmt.Errorf("build crimux-pause: %v\n%s", err, out)
	}
	// A CNI plugin that fails or hangs on demand, for the "cnifault" handler.
	e.FaultControl = filepath.Join(e.Dir, "cni-fault")
	_ = os.MkdirAll(e.FaultControl, 0o755)
	if out, err := run(o.RepoRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(e.Dir, "cni-bin", "crimux-cni-fault"), "./test/cmd/crimux-cni-fault"); err != nil {
		return nil, fmt.Errorf("build crimux-cni-fault: %v\n%s", err, out)
	}
	if err := e.startContainerd(bin); err != nil {
		return nil, err
	}
	reg, err := images.StartRegistry("")
	if err != nil {
		return nil, err
	}
	e.Registry = reg
	if err := PushTestImages(reg); err != nil {
		return nil, err
	}
	if o.ExtraImages != nil {
		if err := o.ExtraImages(reg); err != nil {
			return nil, err
		}
	}
	if err := reg.WriteMirrors(filepath.Join(e.Dir, "certs.d"), append([]string{"docker.io", "registry.k8s.io", "crimux.test"}, o.MirrorHosts...)...); err != nil {
		return nil, err
	}
	// A network of the run's own; no masquerade, so traffic stays in the node.
	b, _ := strconv.ParseUint(id[:2], 16, 8)
	c, _ := strconv.ParseUint(id[2:4], 16, 8)
	e.Subnet = fmt.Sprintf("10.%d.%d.0/24", 200+b%50, c)
	if o.WideSubnets {
		c = c % 128 &^ 3
		e.Subnet = fmt.Sprintf("10.%d.%d.0/22", 200+b%50, c)
	}
	e.Gateway = fmt.Sprintf("10.%d.%d.1", 200+b%50, c)
	netDir := filepath.Join(e.Dir, "net.d")
	_ = os.MkdirAll(netDir, 0o755)
	conflist := cni.DefaultConflist("crimux-test-"+id, e.Bridge, e.Subnet, false)
	conflist = strings.Replace(conflist, `"type": "host-local",`, fmt.Sprintf(`"type": "host-local", "dataDir": %q,`, filepath.Join(e.Dir, "ipam")), 1)
	if err := os.WriteFile(filepath.Join(netDir, "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}
	// The same network with the fault plugin last in the chain.
	faultDir := filepath.Join(e.Dir, "net-fault.d")
	_ = os.MkdirAll(faultDir, 0o755)
	faulty := strings.Replace(conflist, `{"type": "portmap", "capabilities": {"portMappings": true}}`,
		fmt.Sprintf(`{"type": "portmap", "capabilities": {"portMappings": true}}, {"type": "crimux-cni-fault", "control": %q}`, e.FaultControl), 1)
	if err := os.WriteFile(filepath.Join(faultDir, "10-fault.conflist"), []byte(faulty), 0o644); err != nil {
		return nil, err
	}
	if e.DebugAddr, err = freeLoopback(); err != nil {
		return nil, err
	}
	if e.MetricsAddr, err = freeLoopback(); err != nil {
		return nil, err
	}
	e.Socket = filepath.Join(e.Dir, "crimux.sock")
	e.Config = filepath.Join(e.Dir, "crimux.toml")
	cfg := fmt.Sprintf(`socket = %q
root_dir = %q
state_dir = %q
log_level = %q
registry_hosts_dir = %q
pause_binary = %q
[containerd]
address = %q
namespace = "crimux-test"
[cni]
conf_dir = %q
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni", %q]
timeout = "10s"
[debug]
address = %q
[metrics]
address = %q
`, e.Socket, filepath.Join(e.Dir, "root"), filepath.Join(e.Dir, "state"), logLevel(o.LogLevel), filepath.Join(e.Dir, "certs.d"),
		filepath.Join(e.Dir, "crimux-pause"), e.CtrdSock, netDir, filepath.Join(e.Dir, "cni-bin"), e.DebugAddr, e.MetricsAddr)
	cfg += `[handlers.runc]
runtime_path = "runc"
[handlers.gvisor]
runtime_type = "io.containerd.runsc.v1"
[handlers.gvisor.runsc_config]
platform = "systrap"
net-raw = "true"
oci-seccomp = "true"
# A runc handler whose pods' network has a plugin that fails on demand.
[handlers.cnifault]
runtime_path = "runc"
cni_conf_dir = %q
# A handler whose runsc can't start a sandbox, for failure tests.
[handlers.gvisor-broken]
runtime_type = "io.containerd.runsc.v1"
[handlers.gvisor-broken.runsc_config]
platform = "no-such-platform"
`
	cfg = strings.Replace(cfg, "cni_conf_dir = %q", fmt.Sprintf("cni_conf_dir = %q", faultDir), 1)
	if o.Forward {
		if e.Remote, err = e.StartContainerdCRI("f"); err != nil {
			return nil, fmt.Errorf("the fwd handler's remote: %w", err)
		}
		remote := o.Handler
		if remote == "" {
			remote = "runc"
		}
		cfg += fmt.Sprintf("# Forwarded to a containerd's own CRI.\n[handlers.%s]\ndriver = \"cri\"\nendpoint = \"unix://%s\"\nremote_handler = %q\ntimeout = \"2m\"\n",
			FwdHandler, e.Remote.Socket, remote)
		cfg += fmt.Sprintf("# The same remote with a short timeout, for tests of a remote that hangs.\n[handlers.%s]\ndriver = \"cri\"\nendpoint = \"unix://%s\"\nremote_handler = %q\ntimeout = \"3s\"\n",
			FwdShortHandler, e.Remote.Socket, remote)
	}
	cfg += o.ExtraConfig
	if err := os.WriteFile(e.Config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := e.StartCrimux(); err != nil {
		return nil, err
	}
	return e, nil
}

func logLevel(l string) string {
	if l == "" {
		return "debug"
	}
	return l
}

func goEnv(k string) string {
	out, err := exec.Command("go", "env", k).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func run(dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

func (e *Env) startContainerd(bin string) error {
	ctrd := filepath.Join(bin, "containerd")
	if _, err := os.Stat(ctrd); err != nil {
		return fmt.Errorf("containerd 2.x not found at %s (make deps builds it): %w", ctrd, err)
	}
	dir := filepath.Join(e.Dir, "containerd")
	_ = os.MkdirAll(dir, 0o755)
	e.CtrdSock = filepath.Join(dir, "containerd.sock")
	// A restart after a kill finds the old sockets.
	_ = os.Remove(e.CtrdSock)
	_ = os.Remove(e.CtrdSock + ".ttrpc")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.CtrdSock, e.CtrdSock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(e.Dir, "containerd.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(ctrd, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = lf, lf
	// No Pdeathsig: it follows the thread that forked, not the process, and
	// Go ends any thread a goroutine leaves locked (sandbox.NewNetNS did so
	// with every thread that made a netns, and sent containerd a SIGTERM
	// mid-run). Stop, and the next run's Sweep after a crash, end these
	// processes instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	e.ctrd = cmd
	e.ctrdBin = ctrd
	e.logs = append(e.logs, logPath)
	_ = os.WriteFile(filepath.Join(e.Dir, "containerd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	return waitSocket(e.CtrdSock, 30*time.Second)
}

func waitSocket(p string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("socket %s did not appear in %s", p, d)
}

// CrimuxPID is the running crimux's pid, or 0.
func (e *Env) CrimuxPID() int {
	if e.crimux == nil || e.crimux.Process == nil {
		return 0
	}
	return e.crimux.Process.Pid
}

// ContainerdPID is the pid of the containerd crimux drives, or 0.
func (e *Env) ContainerdPID() int {
	if e.ctrd == nil || e.ctrd.Process == nil {
		return 0
	}
	return e.ctrd.Process.Pid
}

// StartCrimux starts `crimux serve` and connects the CRI clients.
func (e *Env) StartCrimux() error { return e.StartCrimuxEnv() }

// StartCrimuxEnv starts crimux with more environment variables (a fault
// point: CRIMUX_TEST_FAULT=name).
func (e *Env) StartCrimuxEnv(extra ...string) error {
	logPath := filepath.Join(e.Dir, "crimux.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_ = os.Remove(e.Socket)
	cmd := exec.Command(e.CrimuxBin, "serve", "--config", e.Config)
	cmd.Env = append(os.Environ(), extra...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no Pdeathsig: see startContainerd
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start crimux: %w", err)
	}
	e.crimux = cmd
	e.logs = append(e.logs, logPath)
	_ = os.WriteFile(filepath.Join(e.Dir, "crimux.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := os.Stat(e.Socket); err == nil && st.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("crimux exited: %v\n%s", err, tail(string(b), 3000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("crimux socket did not appear")
		}
	}
	ctx := context.Background()
	ep := "unix://" + e.Socket
	// The socket file appears at bind, a moment before crimux listens on
	// it: a first connection may be refused. Try again while crimux runs.
	var rs internalapi.RuntimeService
	for {
		rs, err = cri.NewRemoteRuntimeService(ctx, ep, 2*time.Minute, nil, false)
		if err == nil {
			break
		}
		select {
		case xerr := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("crimux exited: %v\n%s", xerr, tail(string(b), 3000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
	go func() { <-exited }()
	is, err := cri.NewRemoteImageService(ctx, ep, 2*time.Minute, nil, false)
	if err != nil {
		return err
	}
	e.Runtime, e.Image = rs, is
	return nil
}

// StopCrimux stops crimux with SIGTERM, leaving pods running.
func (e *Env) StopCrimux() {
	if e.crimux == nil || e.crimux.Process == nil {
		return
	}
	_ = e.crimux.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := e.crimux.Process.Signal(syscall.Signal(0)); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = e.crimux.Process.Kill()
	e.crimux = nil
}

// Logs returns the tails of the services' logs, for failure messages.
func (e *Env) Logs() string {
	var b strings.Builder
	for _, p := range e.logs {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "==== %s ====\n%s\n", p, tail(string(data), 6000))
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Stop stops everything and removes what the run made.
func (e *Env) Stop() {
	e.StopCrimux()
	if e.Registry != nil {
		_ = e.Registry.Close()
	}
	cleanDir(e.Dir)
}

// Sweep removes what earlier runs left behind: processes, mounts, bridges and dirs.
func Sweep() {
	ents, _ := os.ReadDir(BaseDir)
	for _, ent := range ents {
		dir := filepath.Join(BaseDir, ent.Name())
		if b, err := os.ReadFile(filepath.Join(dir, "owner.pid")); err == nil && isLiveOwner(string(b)) {
			continue // a concurrent live run
		}
		cleanDir(dir)
	}
	// Cgroups of runs whose dir is gone.
	for _, top := range cgroupHierarchies() {
		ents, _ := os.ReadDir(top)
		for _, ent := range ents {
			name := "/" + ent.Name()
			if !strings.HasPrefix(name, CgroupPrefix) || len(name) < len(CgroupPrefix)+6 {
				continue
			}
			if _, err := os.Stat(filepath.Join(BaseDir, name[len(CgroupPrefix):len(CgroupPrefix)+6])); err != nil {
				RemoveCgroupTree(name)
			}
		}
	}

	// Bridges of runs whose dir is gone.
	out, _ := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if strings.HasPrefix(name, BridgePrefix) && len(name) >= len(BridgePrefix)+6 {
			if _, err := os.Stat(filepath.Join(BaseDir, name[len(BridgePrefix):len(BridgePrefix)+6])); err != nil {
				_ = exec.Command("ip", "link", "del", name).Run()
			}
		}
	}
}

// cgroupHierarchies are the node's cgroup v1 hierarchies (or the v2 root).
func cgroupHierarchies() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// RemoveCgroupTree removes a top-level cgroup and everything below it in
// every hierarchy, deepest first (a cgroup with processes stays).
func RemoveCgroupTree(root string) {
	for _, top := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(top, root), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// removeRunCgroups removes the top-level cgroups of run id ("/crimux-test-<id>*").
func removeRunCgroups(id string) {
	seen := map[string]bool{}
	for _, top := range cgroupHierarchies() {
		ents, _ := os.ReadDir(top)
		for _, ent := range ents {
			if name := "/" + ent.Name(); strings.HasPrefix(name, CgroupPrefix+id) && !seen[name] {
				seen[name] = true
				RemoveCgroupTree(name)
			}
		}
	}
}

// ownerID names the process that owns a run: its pid and its start time
// (so that a pid reused after a crash is not taken for the owner).
func ownerID(pid int) string {
	return fmt.Sprintf("%d %s", pid, procStart(pid))
}

// procStart is a process's start time in clock ticks since boot ("" if
// it is gone).
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := StatFields(string(b))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// StatFields are the fields of a /proc/<pid>/stat line after the command
// name (the state, field 3, first): the name, in parentheses, may hold
// spaces and parentheses itself, so they are counted from its last ')'.
func StatFields(stat string) []string {
	return strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
}

// isLiveOwner reports whether an owner.pid's process still runs: a test
// binary, make e2e, make node-e2e or a benchmark of another run in
// progress, whatever its command.
func isLiveOwner(id string) bool {
	f := strings.Fields(id)
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid == os.Getpid() {
		return false
	}
	return procStart(pid) == f[1]
}

// cleanDir kills the run's processes (crimux, containerd, its shims and
// containers), unmounts everything under dir, deletes its bridge and dir.
func cleanDir(dir string) {
	pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, name := range pids {
		if filepath.Base(name) == "owner.pid" {
			continue
		}
		if b, err := os.ReadFile(name); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = unix.Kill(-pid, syscall.SIGKILL)
				_ = unix.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Shims outlive containerd; kill those serving this run's containerd, and their children.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmd), "containerd-shim") && strings.Contains(string(cmd), dir) {
			killTree(pid)
		}
	}
	time.Sleep(200 * time.Millisecond)
	unmountUnder(dir)
	removeRunCgroups(filepath.Base(dir))
	// The run's bridge, and those of the containerd CRIs it started.
	out, _ := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(strings.TrimSuffix(f[1], ":"), BridgePrefix+filepath.Base(dir)) {
			_ = exec.Command("ip", "link", "del", strings.TrimSuffix(f[1], ":")).Run()
		}
	}
	_ = os.RemoveAll(dir)
}

func killTree(pid int) {
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, c := range strings.Fields(string(children)) {
		if cp, err := strconv.Atoi(c); err == nil {
			killTree(cp)
		}
	}
	_ = unix.Kill(pid, syscall.SIGKILL)
}

// MountsUnder lists mount points at or below dir.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

func unmountUnder(dir string) {
	for i := 0; i < 5; i++ {
		ms := MountsUnder(dir)
		if len(ms) == 0 {
			return
		}
		for j := len(ms) - 1; j >= 0; j-- {
			_ = unix.Unmount(ms[j], unix.MNT_DETACH)
		}
	}
}
