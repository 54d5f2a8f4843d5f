// Command e2e runs crimux under a real kubelet: it builds nothing itself
// (make e2e builds kubelet, kube-apiserver, kubectl and etcd first), starts
// containerd, a registry with the test images and crimux through the test
// harness, then etcd and kube-apiserver on loopback and a kubelet pointed at
// crimux's socket, and runs each scenario for the runc, gvisor and fwd
// RuntimeClasses (fwd forwards to a containerd's own CRI) and for pods
// without one (crimux's default handler). It
// prints one line per scenario and "N passed, N failed".
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/crimux/crimux/test/harness"
)

type e2e struct {
	env    *harness.Env
	c      *cluster
	k8sBin string
	passed []string
	failed []string
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func main() {
	binDir := flag.String("bin-dir", "/usr/local/bin", "containerd, its shims, runc, runsc")
	k8sBin := flag.String("k8s-bin", "/var/cache/crimux/e2e/bin", "kubelet, kube-apiserver, kubectl, etcd")
	handlers := flag.String("handlers", "runc,gvisor,"+harness.FwdHandler+",", "RuntimeClass handlers to run the scenarios with (empty: no RuntimeClass)")
	keep := flag.Bool("keep", false, "leave everything running and print how to reach it")
	flag.Parse()
	for _, b := range []string{"kubelet", "kube-apiserver", "kubectl", "etcd"} {
		if _, err := os.Stat(filepath.Join(*k8sBin, b)); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s not in %s (make e2e-bin builds it): %v\n", b, *k8sBin, err)
			os.Exit(2)
		}
	}
	// Handler fwd forwards to a containerd's own CRI (its runc handler).
	env, err := harness.Start(harness.Options{RepoRoot: repoRoot(), BinDir: *binDir, LogLevel: "info", Forward: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: harness: %v\n", err)
		if env != nil {
			fmt.Fprintln(os.Stderr, env.Logs())
		}
		os.Exit(1)
	}
	e := &e2e{env: env, k8sBin: *k8sBin}
	code := e.run(strings.Split(*handlers, ","))
	if *keep {
		fmt.Printf("left running: KUBECONFIG=%s %s/kubectl get pods\n", e.c.kubeCfg, *k8sBin)
		os.Exit(code)
	}
	if e.c != nil {
		e.c.stop()
	}
	env.Stop()
	os.Exit(code)
}

func (e *e2e) result(name string, start time.Time, err error) {
	d := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		e.failed = append(e.failed, name)
		fmt.Printf("FAIL  %-70s %6s  %v\n", name, d, err)
		return
	}
	e.passed = append(e.passed, name)
	fmt.Printf("ok    %-70s %6s\n", name, d)
}

func (e *e2e) run(handlers []string) int {
	start := time.Now()
	c, err := startCluster(e.env, e.k8sBin)
	e.c = c
	if err != nil {
		fmt.Printf("FAIL  start etcd, kube-apiserver and a kubelet on crimux: %v\n", err)
		e.dumpLogs()
		return 1
	}
	fmt.Printf("control plane and kubelet up in %s (node %q on %s)\n", time.Since(start).Round(time.Second), nodeName, e.env.Socket)
	ctx := context.Background()
	rcs := []obj{}
	for _, h := range []string{"runc", "gvisor", harness.FwdHandler, "nosuch"} {
		rcs = append(rcs, obj{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": obj{"name": h}, "handler": h})
	}
	if _, err := c.kubectlIn(ctx, list(rcs...), "apply", "-f", "-"); err != nil {
		fmt.Printf("FAIL  create RuntimeClasses: %v\n", err)
		return 1
	}

	// Every scenario's objects at once: the kubelet starts them in parallel.
	var all []scenario
	var objs []obj
	for _, h := range handlers {
		for _, s := range e.handlerScenarios(h) {
			label := h
			if label == "" {
				label = "default"
			}
			s.name = fmt.Sprintf("[%s] %s", label, s.name)
			all = append(all, s)
			objs = append(objs, s.objs...)
		}
	}
	unknown := podObj("unknown-handler", "nosuch", obj{"containers": []obj{ctr("c", "exec sleep 3600", nil)}})
	objs = append(objs, unknown)
	if _, err := c.kubectlIn(ctx, list(objs...), "apply", "-f", "-"); err != nil {
		fmt.Printf("FAIL  create the scenarios' objects: %v\n", err)
		return 1
	}

	t := time.Now()
	e.result("node status lists every handler with its features", t, e.checkRuntimeHandlers(ctx))
	t = time.Now()
	e.result("an unknown RuntimeClass handler is refused with an event naming it", t,
		c.waitEvent(ctx, "unknown-handler", "FailedCreatePodSandBox", `unknown runtime handler "nosuch"`))
	for _, s := range all {
		t := time.Now()
		e.result(s.name, t, s.check(ctx))
	}
	t = time.Now()
	e.result("pod-to-pod traffic across handlers", t, e.checkPodToPod(ctx, handlers))

	stable := e.stablePods(handlers)
	t = time.Now()
	e.result("kubelet restarted: pods keep running, nothing recreated", t, e.checkRestart(ctx, stable, c.restartKubelet))
	t = time.Now()
	e.result("crimux restarted under a running kubelet: pods keep running, nothing recreated", t, e.checkRestart(ctx, stable, func() error {
		e.env.StopCrimux()
		return e.env.StartCrimux()
	}))
	t = time.Now()
	e.result("deleting every pod leaves no sandbox, netns, IP or containerd object", t, e.checkCleanup(ctx))

	fmt.Printf("%d passed, %d failed\n", len(e.passed), len(e.failed))
	if len(e.failed) > 0 {
		e.dumpLogs()
		return 1
	}
	return 0
}

func (e *e2e) dumpLogs() {
	if e.c == nil {
		return
	}
	for _, p := range []string{e.c.kubeletLog, filepath.Join(e.c.dir, "kube-apiserver.log")} {
		b, _ := os.ReadFile(p)
		s := string(b)
		if len(s) > 8000 {
			s = s[len(s)-8000:]
		}
		fmt.Fprintf(os.Stderr, "==== %s ====\n%s\n", p, s)
	}
	fmt.Fprintln(os.Stderr, e.env.Logs())
}

func (e *e2e) checkRuntimeHandlers(ctx context.Context) error {
	return waitFor(60*time.Second, "node runtimeHandlers", func() error {
		var n struct {
			Status struct {
				RuntimeHandlers []struct {
					Name     string
					Features struct {
						RecursiveReadOnlyMounts *bool `json:"recursiveReadOnlyMounts"`
						UserNamespaces          *bool `json:"userNamespaces"`
					}
				} `json:"runtimeHandlers"`
			}
		}
		if err := e.c.getJSON(ctx, &n, "get", "node", nodeName); err != nil {
			return err
		}
		got := map[string]string{}
		for _, h := range n.Status.RuntimeHandlers {
			f := func(b *bool) bool { return b != nil && *b }
			got[h.Name] = fmt.Sprintf("rro=%t userns=%t", f(h.Features.RecursiveReadOnlyMounts), f(h.Features.UserNamespaces))
		}
		// The forwarded handler's are the remote's (containerd's runc handler).
		if got["runc"] != "rro=true userns=true" || got["gvisor"] != "rro=true userns=false" || got[harness.FwdHandler] == "" {
			return fmt.Errorf("runtimeHandlers %v", got)
		}
		return nil
	})
}

// checkPodToPod: every handler's web server is reached from every
// handler's pod over the pod network.
func (e *e2e) checkPodToPod(ctx context.Context, handlers []string) error {
	ips := map[string]string{}
	for _, h := range handlers {
		s := h
		if s == "" {
			s = "default"
		}
		p, err := e.c.pod(ctx, "sidecar-"+s)
		if err != nil || net.ParseIP(p.Status.PodIP) == nil {
			return fmt.Errorf("pod sidecar-%s has no IP: %v", s, err)
		}
		ips[s] = p.Status.PodIP
	}
	for from := range ips {
		for to, ip := range ips {
			out, err := e.c.exec(ctx, "sidecar-"+from, "side", "wget", "-qO-", "http://"+ip+":8080/")
			if err != nil || strings.TrimSpace(out) != "hello-from-"+to {
				return fmt.Errorf("%s → %s (%s): %q %v", from, to, ip, out, err)
			}
		}
	}
	return nil
}

// stablePods are the scenario pods that run on unchanged: a restart of the
// kubelet or of crimux must leave their containers as they are.
func (e *e2e) stablePods(handlers []string) []string {
	var out []string
	for _, h := range handlers {
		s := h
		if s == "" {
			s = "default"
		}
		for _, base := range []string{"sidecar", "init", "shared", "volumes", "io", "guaranteed", "burstable"} {
			out = append(out, base+"-"+s)
		}
		if !strings.HasPrefix(h, "gvisor") {
			out = append(out, "hostnet-"+s, "userns-"+s)
		}
	}
	return out
}

func (e *e2e) snapshot(ctx context.Context, pods []string) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range pods {
		p, err := e.c.pod(ctx, name)
		if err != nil {
			return nil, err
		}
		if !p.ready() {
			return nil, fmt.Errorf("pod %s is not ready", name)
		}
		for _, st := range p.Status.ContainerStatuses {
			out[name+"/"+st.Name] = fmt.Sprintf("%s restarts=%d", st.ContainerID, st.RestartCount)
		}
	}
	return out, nil
}

func (e *e2e) checkRestart(ctx context.Context, pods []string, restart func() error) error {
	before, err := e.snapshot(ctx, pods)
	if err != nil {
		return err
	}
	if err := restart(); err != nil {
		return err
	}
	// A few kubelet sync periods (5 s) for anything it would recreate.
	time.Sleep(20 * time.Second)
	var after map[string]string
	if err := waitFor(60*time.Second, "pods ready again", func() error {
		var err error
		after, err = e.snapshot(ctx, pods)
		return err
	}); err != nil {
		return err
	}
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %s → %s", k, v, after[k]))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		return fmt.Errorf("containers changed: %s", strings.Join(diffs, "; "))
	}
	return nil
}

func (e *e2e) checkCleanup(ctx context.Context) error {
	if _, err := e.c.kubectl(ctx, "delete", "pods", "--all", "--wait=true", "--timeout=3m"); err != nil {
		return err
	}
	if err := waitFor(2*time.Minute, "no pods left", func() error {
		out, err := e.c.kubectl(ctx, "get", "pods", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("pods %q %v", out, err)
		}
		return nil
	}); err != nil {
		return err
	}
	return waitFor(2*time.Minute, "crimux and containerd empty", func() error {
		sbs, err := e.env.Runtime.ListPodSandbox(ctx, nil)
		if err != nil {
			return err
		}
		if len(sbs) > 0 {
			return fmt.Errorf("%d pod sandboxes left", len(sbs))
		}
		cl, err := client.New(e.env.CtrdSock, client.WithDefaultNamespace("crimux-test"))
		if err != nil {
			return err
		}
		defer cl.Close()
		conts, err := cl.Containers(ctx)
		if err != nil {
			return err
		}
		if len(conts) > 0 {
			return fmt.Errorf("%d containerd containers left", len(conts))
		}
		if rp, err := e.env.Remote.Runtime.ListPodSandbox(ctx, nil); err != nil || len(rp) > 0 {
			return fmt.Errorf("%d pods left on the fwd handler's remote: %v", len(rp), err)
		}
		if ents, _ := os.ReadDir(filepath.Join(e.env.Dir, "state", "netns")); len(ents) > 0 {
			return fmt.Errorf("%d netns left", len(ents))
		}
		var ips []string
		for _, dir := range []string{filepath.Join(e.env.Dir, "ipam"), filepath.Join(e.env.Remote.Dir, "ipam")} {
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && net.ParseIP(d.Name()) != nil {
					ips = append(ips, d.Name())
				}
				return nil
			})
		}
		if len(ips) > 0 {
			return fmt.Errorf("IPs still allocated: %v", ips)
		}
		return nil
	})
}
