package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crimux/crimux/test/harness"
)

// The node e2e suite hard-codes the kubelet's root and pod log dirs and
// the control plane's address; a run owns them while it lasts.
const (
	kubeletRoot = "/var/lib/kubelet"
	podLogsDir  = "/var/log/pods"
	apiServer   = "https://127.0.0.1:6443"
	// ownerMark marks kubeletRoot as made by this runner: only then is it
	// removed (a leftover of a crashed run) rather than refused.
	ownerMark = ".crimux-node-e2e"
	// kubepods is the cgroup the kubelet makes (cgroupRoot "/", as the
	// suite configures it: the cgroup-manager specs expect /kubepods).
	kubepods = "/kubepods"
)

// node is the suite's control plane (e2e_node.test --run-services-mode:
// etcd, kube-apiserver and the namespace controller in one process) and a
// kubelet on a CRI endpoint.
type node struct {
	dir     string // this target's dir in the run
	runDir  string // the harness run's dir (pid files there are swept)
	suite   string // e2e_node.test
	kubelet string // the kubelet binary
	token   string
	nodeIP  string
	sysctls map[string]string

	services, kubeletCmd *exec.Cmd
}

// claimNodeDirs makes sure the kubelet dirs are free: a leftover of an
// earlier run of this runner (marked) is unmounted and removed; anything
// else there is refused, naming it.
func claimNodeDirs() error {
	if _, err := os.Stat(kubeletRoot); err == nil {
		if _, err := os.Stat(filepath.Join(kubeletRoot, ownerMark)); err != nil {
			// Not ours: free only if no kubelet keeps pods there (a
			// kubelet with another root dir still puts its device-plugin
			// socket and certificates here).
			pods, _ := os.ReadDir(filepath.Join(kubeletRoot, "pods"))
			if len(pods) > 0 || len(harness.MountsUnder(kubeletRoot+"/")) > 0 {
				return fmt.Errorf("%s has pods or mounts and was not made by this runner (no %s in it): is a kubelet running on this machine? Stop it and remove the dir first", kubeletRoot, ownerMark)
			}
		}
	}
	releaseNodeDirs()
	if err := os.MkdirAll(kubeletRoot, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(kubeletRoot, ownerMark), nil, 0o644)
}

// releaseNodeDirs removes what a kubelet run leaves on the node: the
// mounts and files under its root, the pod logs and its cgroups.
func releaseNodeDirs() {
	releaseRoot(kubeletRoot)
	_ = os.RemoveAll(podLogsDir)
	harness.RemoveCgroupTree(kubepods)
}

// releaseRoot unmounts everything at or under a kubelet root dir (the
// kubelet bind-mounts its root onto itself to make it shared, then mounts
// volumes below) and removes it.
func releaseRoot(root string) {
	for i := 0; i < 5; i++ {
		var ms []string
		for _, m := range harness.MountsUnder(root) {
			if m == root || strings.HasPrefix(m, root+"/") {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			break
		}
		for j := len(ms) - 1; j >= 0; j-- {
			_ = unix.Unmount(ms[j], unix.MNT_DETACH)
		}
	}
	_ = os.RemoveAll(root)
}

// start runs a process in its own group, output to dir/name.log, its pid
// in the run's dir (the harness's sweep kills it after a crash).
func (n *node) start(name, bin string, args ...string) (*exec.Cmd, error) {
	lf, err := os.OpenFile(filepath.Join(n.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); lf.Close() }()
	_ = os.WriteFile(filepath.Join(n.runDir, "node-e2e-"+filepath.Base(n.dir)+"-"+name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	return cmd, nil
}

// startServices starts the suite's control plane and waits until the API
// server is ready.
func (n *node) startServices() error {
	var err error
	n.services, err = n.start("services", n.suite, "--run-services-mode", "--bearer-token="+n.token, "--v=1")
	if err != nil {
		return err
	}
	return waitFor(3*time.Minute, "the suite's kube-apiserver on "+apiServer, func() error {
		_, err := n.api(context.Background(), "GET", "/readyz", nil)
		return err
	})
}

// api makes one request to the API server as the suite's admin.
func (n *node) api(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, apiServer+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The suite's API server has a self-signed certificate of its own.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		return b.Bytes(), fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(b.String()))
	}
	return b.Bytes(), nil
}

// kernelTunables are the sysctls a kubelet sets at start; restored after.
var kernelTunables = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// startKubelet starts a kubelet on the CRI endpoint with what the suite's
// own kubelet start gives it (services/kubelet.go: cgroup root "/", the
// eviction thresholds, static pods, anonymous read access), on this node's
// hostname with nodeIP as its address, and waits until the node is Ready.
func (n *node) startKubelet(endpoint string) error {
	n.sysctls = map[string]string{}
	for _, k := range kernelTunables {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			n.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	kubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: kubelet
  user: {token: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: kubelet}
current-context: e2e
`, apiServer, n.token)), 0o600); err != nil {
		return err
	}
	staticPods := filepath.Join(n.dir, "static-pods")
	resolv := filepath.Join(n.dir, "resolv.conf")
	_ = os.MkdirAll(staticPods, 0o755)
	// Pods resolve nothing outside the node.
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: %s
imageServiceEndpoint: %s
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /
cgroupsPerQOS: true
failSwapOn: false
serializeImagePulls: false
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
podCIDR: 10.100.0.0/24
evictionPressureTransitionPeriod: 30s
evictionHard: {"memory.available": "250Mi", "nodefs.available": "10%%", "nodefs.inodesFree": "5%%"}
evictionMinimumReclaim: {"nodefs.available": "5%%", "nodefs.inodesFree": "5%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
staticPodPath: %s
resolvConf: %s
readOnlyPort: 10255
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
`, endpoint, endpoint, staticPods, resolv)
	cfgPath := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	var err error
	n.kubeletCmd, err = n.start("kubelet", n.kubelet, "--config", cfgPath, "--kubeconfig", kubeconfig,
		"--root-dir", kubeletRoot, "--node-ip", n.nodeIP, "--v", "2")
	if err != nil {
		return err
	}
	return waitFor(3*time.Minute, "node Ready", func() error {
		b, err := n.api(context.Background(), "GET", "/api/v1/nodes", nil)
		if err != nil {
			return err
		}
		var l struct {
			Items []struct {
				Status struct {
					Conditions []struct{ Type, Status, Message string }
				}
			}
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		if len(l.Items) != 1 {
			return fmt.Errorf("%d nodes", len(l.Items))
		}
		for _, c := range l.Items[0].Status.Conditions {
			if c.Type == "Ready" {
				if c.Status == "True" {
					return nil
				}
				return fmt.Errorf("node not ready: %s", c.Message)
			}
		}
		return errors.New("no Ready condition")
	})
}

// stop ends the kubelet and the control plane, restores the sysctls the
// kubelet changed and releases the node dirs.
func (n *node) stop() {
	stopCmd(n.kubeletCmd)
	stopCmd(n.services)
	for k, v := range n.sysctls {
		_ = os.WriteFile("/proc/sys/"+k, []byte(v), 0o644)
	}
}

func stopCmd(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = unix.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	for i := 0; i < 150; i++ {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = unix.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
}

// waitFor retries f until it returns nil or d passes.
func waitFor(d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
