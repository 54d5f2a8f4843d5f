// Command nodee2e runs Kubernetes' node conformance suite
// (k8s.io/kubernetes/test/e2e_node, its parallel-safe [NodeConformance]
// specs) against crimux, once per handler, and against containerd's own CRI
// plugin on the same machine, images and skips as the baseline. make
// node-e2e builds the suite, agnhost and ginkgo first (hack/install-node-e2e.sh).
//
// It starts containerd, a registry with the suite's images (built here:
// nothing is pulled from outside the node) and crimux through the test
// harness; then per target the suite's own control plane
// (e2e_node.test --run-services-mode), a kubelet on the target's CRI socket,
// and the suite through ginkgo. It writes results.json and results.md to
// -out and fails when runc fails a spec containerd's CRI passes, or gvisor
// fails any spec (every gVisor limit is in the skip list with its reason).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"

	"github.com/crimux/crimux/test/harness"
	"github.com/crimux/crimux/test/skiplist"
)

// baseSkip leaves out the specs that may not run in parallel or on a node
// that others use, as upstream's parallel node conformance job does.
// flakeAttempts: a spec that fails is run once more, for every target
// alike (several specs time their steps to the second on a loaded 2-core
// node); results.md lists what passed only on the retry.
const flakeAttempts = 2

// k8sVersion is the suite's version (make node-e2e-bin builds it).
const k8sVersion = "v1.37.2"

const baseSkip = `\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Slow\]|\[Feature:[^\]]+\]`

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

type runner struct {
	env      *harness.Env
	baseline *harness.ContainerdCRI
	nodeBin  string
	k8sBin   string
	out      string
	focus    string
	skips    []skiplist.Entry
	nodes    int
	timeout  time.Duration
	nodeIP   string

	mu      sync.Mutex
	cur     *node     // the target's control plane and kubelet, while they run
	ginkgo  *exec.Cmd // the suite, while it runs
	stopped bool
}

// interrupt stops what runs on SIGINT or SIGTERM and removes what the run
// made, as its normal end does.
func (r *runner) interrupt() {
	r.mu.Lock()
	r.stopped = true
	if r.ginkgo != nil {
		stopCmd(r.ginkgo)
	}
	if r.cur != nil {
		r.cur.stop()
	}
	env := r.env
	r.mu.Unlock()
	releaseNodeDirs()
	if r.baseline != nil {
		r.baseline.Stop()
	}
	// Before the harness is up there is nothing of its own to stop; what
	// its start made is swept by the next run.
	if env != nil {
		env.Stop()
	}
}

func main() {
	binDir := flag.String("bin-dir", "/usr/local/bin", "containerd, its shims, runc, runsc")
	k8sBin := flag.String("k8s-bin", "/var/cache/crimux/e2e/bin", "the kubelet (make e2e-bin)")
	nodeBin := flag.String("node-bin", "/var/cache/crimux/e2e/node", "e2e_node.test, agnhost and ginkgo (hack/install-node-e2e.sh)")
	targets := flag.String("targets", "containerd,runc,gvisor", "what to run the suite against: containerd (its own CRI, runc: the baseline) and crimux handlers")
	focus := flag.String("focus", `\[NodeConformance\]`, "ginkgo --focus")
	skipFile := flag.String("skips", filepath.Join(repoRoot(), "test/nodee2e/skips.txt"), "the skip list")
	nodes := flag.Int("nodes", 20, "ginkgo parallel processes (the specs mostly wait)")
	timeout := flag.Duration("timeout", 90*time.Minute, "ginkgo's timeout per target")
	out := flag.String("out", filepath.Join(repoRoot(), "_output/node-e2e"), "results and logs")
	logLevel := flag.String("log-level", "info", "crimux's log level (debug logs every CRI call)")
	flag.Parse()
	for _, b := range []string{filepath.Join(*k8sBin, "kubelet"), filepath.Join(*nodeBin, "e2e_node.test"), filepath.Join(*nodeBin, "agnhost"), filepath.Join(*nodeBin, "ginkgo"), filepath.Join(*nodeBin, "nnp"), filepath.Join(*nodeBin, "localhost.crt")} {
		if _, err := os.Stat(b); err != nil {
			fmt.Fprintf(os.Stderr, "node-e2e: %v (make node-e2e-bin builds it)\n", err)
			os.Exit(2)
		}
	}
	if _, err := regexp.Compile(*focus); err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: -focus: %v\n", err)
		os.Exit(2)
	}
	skips, err := skiplist.Read(*skipFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: %v\n", err)
		os.Exit(2)
	}
	if err := claimNodeDirs(); err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: %v\n", err)
		os.Exit(2)
	}
	// Processes started in the output dir get paths in it: absolute ones
	// (make passes a relative -out).
	if abs, err := filepath.Abs(*out); err == nil {
		*out = abs
	}
	// os.Exit skips deferred calls: every way out releases the node dirs.
	_ = os.RemoveAll(*out)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: %v\n", err)
		releaseNodeDirs()
		os.Exit(2)
	}
	r := &runner{nodeBin: *nodeBin, k8sBin: *k8sBin, out: *out, focus: *focus, skips: skips, nodes: *nodes, timeout: *timeout}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "node-e2e: %v: stopping and cleaning up\n", s)
		r.interrupt()
		os.Exit(130)
	}()
	env, err := harness.Start(harness.Options{RepoRoot: repoRoot(), BinDir: *binDir, LogLevel: *logLevel, Release: true, MirrorHosts: mirrorHosts})
	if err == nil {
		err = pushNodeImages(env.Registry, *nodeBin, repoRoot(), env.Dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: harness: %v\n", err)
		if env != nil {
			fmt.Fprintln(os.Stderr, env.Logs())
			env.Stop()
		}
		releaseNodeDirs()
		os.Exit(1)
	}
	r.mu.Lock()
	r.env = env
	r.mu.Unlock()
	code := r.run(strings.Split(*targets, ","))
	// The services' logs outlive the run's dir.
	for _, l := range []string{"crimux.log", "containerd.log", "cri-b/containerd.log"} {
		if b, err := os.ReadFile(filepath.Join(env.Dir, l)); err == nil {
			_ = os.WriteFile(filepath.Join(*out, strings.ReplaceAll(l, "/", "-")), b, 0o644)
		}
	}
	if r.baseline != nil {
		r.baseline.Stop()
	}
	env.Stop()
	releaseNodeDirs()
	os.Exit(code)
}

func (r *runner) run(targets []string) int {
	// The node's address: the kubelet's must not be loopback (the API
	// server won't proxy logs, exec or node stats there). The harness's
	// bridge with its gateway address, made before the first pod does.
	r.nodeIP = r.env.Gateway
	if err := ensureBridge(r.env.Bridge, r.env.Gateway, r.env.Subnet); err != nil {
		fmt.Printf("FAIL  node address: %v\n", err)
		return 1
	}
	results := map[string]map[string]spec{}
	for _, t := range targets {
		start := time.Now()
		rep, err := r.runTarget(t)
		if err != nil {
			fmt.Printf("FAIL  %s: %v\n", t, err)
			if rep == nil {
				return 1
			}
		}
		results[t] = rep
		c := count(rep)
		fmt.Printf("%-10s %3d passed, %3d failed, %3d skipped in %s\n", t, c.Passed, c.Failed, c.Skipped, time.Since(start).Round(time.Second))
	}
	return r.report(targets, results)
}

// runTarget runs the suite against one target and returns its specs.
func (r *runner) runTarget(target string) (map[string]spec, error) {
	var endpoint string
	var rs internalapi.RuntimeService
	handler := target
	switch target {
	case "containerd":
		if r.baseline == nil {
			var err error
			// The suite's RuntimeClass specs use a handler "test-handler"
			// that the node has (upstream configures it as runc).
			runc, _ := exec.LookPath("runc")
			extra := fmt.Sprintf(`[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.test-handler]
  runtime_type = 'io.containerd.runc.v2'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.test-handler.options]
    BinaryName = %q
`, runc)
			if r.baseline, err = r.env.StartContainerdCRIWith("b", extra); err != nil {
				return nil, fmt.Errorf("containerd's CRI: %w", err)
			}
		}
		endpoint, rs, handler = "unix://"+r.baseline.Socket, r.baseline.Runtime, "runc"
	default:
		if err := r.setDefaultHandler(target); err != nil {
			return nil, err
		}
		endpoint, rs = "unix://"+r.env.Socket, r.env.Runtime
	}
	dir := filepath.Join(r.out, target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := claimNodeDirs(); err != nil {
		return nil, err
	}
	defer releaseNodeDirs()
	n := &node{dir: dir, runDir: r.env.Dir, suite: filepath.Join(r.nodeBin, "e2e_node.test"), kubelet: filepath.Join(r.k8sBin, "kubelet"), token: randToken(), nodeIP: r.nodeIP}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, errors.New("interrupted")
	}
	r.cur = n
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
		n.stop()
		removePods(rs)
	}()
	if err := n.startServices(); err != nil {
		return nil, err
	}
	if err := n.startKubelet(endpoint); err != nil {
		return nil, err
	}
	report := filepath.Join(dir, "report.json")
	args := []string{
		"--nodes", fmt.Sprint(r.nodes), "--focus", r.focus, "--skip", skipRegexp(baseSkip, r.skips, handler),
		"--timeout", r.timeout.String(), "--flake-attempts", fmt.Sprint(flakeAttempts), "--no-color", "--json-report", "report.json", "--output-dir", dir, "--silence-skips",
		filepath.Join(r.nodeBin, "e2e_node.test"), "--",
		"--start-services=false", "--host=" + apiServer, "--bearer-token=" + n.token,
		"--container-runtime-endpoint=" + endpoint, "--image-service-endpoint=" + endpoint,
		"--prepull-images=false", "--report-dir=" + dir,
	}
	cmd := exec.Command(filepath.Join(r.nodeBin, "ginkgo"), args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stopCmd ends its processes too
	logf, err := os.Create(filepath.Join(dir, "ginkgo.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	fmt.Printf("running the suite against %s (%s); output in %s\n", target, endpoint, logf.Name())
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.ginkgo = cmd
	r.mu.Unlock()
	runErr := cmd.Wait() // non-zero when a spec failed; the report says which
	r.mu.Lock()
	r.ginkgo = nil
	r.mu.Unlock()
	focus, base := regexp.MustCompile(r.focus), regexp.MustCompile(baseSkip)
	rep, err := readReport(report, func(name string) bool { return focus.MatchString(name) && !base.MatchString(name) })
	if err != nil {
		return nil, fmt.Errorf("ginkgo: %v; %w (see %s)", runErr, err, logf.Name())
	}
	return rep, nil
}

// testHandlerMark starts the handler the suite's RuntimeClass specs use in
// crimux's config; it is the last section.
const testHandlerMark = "# node e2e: the suite's RuntimeClass handler"

// setDefaultHandler restarts crimux with handler as its default_handler
// (the suite's pods name no RuntimeClass) and as the runtime of the
// suite's "test-handler" (its RuntimeClass specs expect the node to have
// one; upstream configures it as the node's default runtime).
func (r *runner) setDefaultHandler(handler string) error {
	b, err := os.ReadFile(r.env.Config)
	if err != nil {
		return err
	}
	text, _, _ := strings.Cut(string(b), testHandlerMark)
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "default_handler") {
			lines = append(lines, l)
		}
	}
	testHandler := "[handlers.test-handler]\nruntime_path = \"runc\"\n"
	if handler == "gvisor" {
		testHandler = "[handlers.test-handler]\nruntime_type = \"io.containerd.runsc.v1\"\n[handlers.test-handler.runsc_config]\nplatform = \"systrap\"\nnet-raw = \"true\"\noci-seccomp = \"true\"\n"
	}
	cfg := fmt.Sprintf("default_handler = %q\n", handler) + strings.Join(lines, "\n") + testHandlerMark + "\n" + testHandler
	if err := os.WriteFile(r.env.Config, []byte(cfg), 0o644); err != nil {
		return err
	}
	r.env.StopCrimux()
	return r.env.StartCrimux()
}

// removePods removes what the suite left in a runtime after the kubelet
// stopped (pods of namespaces still being deleted).
func removePods(rs internalapi.RuntimeService) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Printf("list pods left behind: %v\n", err)
		return
	}
	for _, p := range pods {
		_ = rs.StopPodSandbox(ctx, p.Id)
		if err := rs.RemovePodSandbox(ctx, p.Id); err != nil {
			fmt.Printf("remove pod %s left behind: %v\n", p.Id, err)
		}
	}
}

// ensureBridge makes the run's bridge with its gateway address, as the CNI
// bridge plugin would at the first pod.
func ensureBridge(name, gw, subnet string) error {
	if exec.Command("ip", "link", "show", name).Run() != nil {
		if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link add %s: %v: %s", name, err, out)
		}
	}
	bits := subnet[strings.IndexByte(subnet, '/'):]
	out, _ := exec.Command("ip", "-o", "addr", "show", "dev", name).Output()
	if !strings.Contains(string(out), " "+gw+bits) {
		if out, err := exec.Command("ip", "addr", "add", gw+bits, "dev", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip addr add %s: %v: %s", gw, err, out)
		}
	}
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s up: %v: %s", name, err, out)
	}
	return nil
}

func randToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
