package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

// 4 runc pods, 4 gVisor pods and 2 pods forwarded to another CRI runtime
// (its own network) made concurrently on one crimux all reach each other
// over the pod network, and are all removed with nothing left.
func TestMixedNode(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	handlers := []string{"runc", "runc", "runc", "runc", "gvisor", "gvisor", "gvisor", "gvisor", fwd, fwd}
	type pod struct {
		cfg     *runtime.PodSandboxConfig
		id, ctr string
		ip      string
		handler string
		err     error
	}
	pods := make([]*pod, len(handlers))
	var wg sync.WaitGroup
	start := time.Now()
	for i, h := range handlers {
		pods[i] = &pod{cfg: podConfig(t, fmt.Sprintf("mixed-%d", i)), handler: h}
		wg.Add(1)
		go func(p *pod) {
			defer wg.Done()
			id, err := env.Runtime.RunPodSandbox(ctx(t), p.cfg, p.handler)
			if err != nil {
				p.err = fmt.Errorf("run %s pod: %w", p.handler, err)
				return
			}
			p.id = id
			c := ctrConfig("web", "sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w")
			cid, err := env.Runtime.CreateContainer(ctx(t), id, c, p.cfg)
			if err == nil {
				err = env.Runtime.StartContainer(ctx(t), cid)
			}
			if err != nil {
				p.err = fmt.Errorf("container in %s pod: %w", p.handler, err)
				return
			}
			p.ctr = cid
		}(pods[i])
	}
	wg.Wait()
	t.Logf("10 pods with a container each, concurrently: %s", time.Since(start))
	t.Cleanup(func() {
		for _, p := range pods {
			if p.id != "" {
				_ = env.Runtime.StopPodSandbox(ctx(t), p.id)
				_ = env.Runtime.RemovePodSandbox(ctx(t), p.id)
			}
		}
	})
	for _, p := range pods {
		if p.err != nil {
			t.Fatal(p.err)
		}
		p.ip = podIP(t, p.id)
		st, _ := env.Runtime.PodSandboxStatus(ctx(t), p.id, false)
		if st.Status.RuntimeHandler != p.handler {
			t.Errorf("pod %s handler %q, want %q", p.id, st.Status.RuntimeHandler, p.handler)
		}
	}
	// Every pod fetches every other pod's page over the pod network.
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.ip)
	}
	script := "for ip in " + strings.Join(ips, " ") + "; do until timeout 3 wget -qO- http://$ip/ 2>/dev/null; do sleep 0.2; done; done"
	for _, p := range pods {
		wg.Add(1)
		go func(p *pod) {
			defer wg.Done()
			out, stderr, err := env.Runtime.ExecSync(ctx(t), p.ctr, []string{"sh", "-c", script}, 60*time.Second)
			if err != nil {
				p.err = fmt.Errorf("%s pod %s: %v %s", p.handler, p.ip, err, stderr)
				return
			}
			for _, q := range pods {
				if !strings.Contains(string(out), q.cfg.Hostname) {
					p.err = fmt.Errorf("%s pod %s did not reach %s (%s): %q", p.handler, p.ip, q.ip, q.handler, out)
				}
			}
		}(p)
	}
	wg.Wait()
	for _, p := range pods {
		if p.err != nil {
			t.Error(p.err)
		}
	}
	var podIDs, ctrIDs []string
	for _, p := range pods {
		wg.Add(1)
		go func(p *pod) {
			defer wg.Done()
			if err := env.Runtime.StopPodSandbox(ctx(t), p.id); err != nil {
				p.err = err
				return
			}
			p.err = env.Runtime.RemovePodSandbox(ctx(t), p.id)
		}(p)
		podIDs = append(podIDs, p.id)
		ctrIDs = append(ctrIDs, p.ctr)
	}
	wg.Wait()
	for _, p := range pods {
		if p.err != nil {
			t.Errorf("remove %s pod: %v", p.handler, p.err)
		}
	}
	assertNoLeaks(t, podIDs, ctrIDs)
	assertNoShims(t, podIDs)
}

// A runsc that can't start a sandbox leaves nothing behind, and the client
// hears runsc's reason.
func TestGvisorStartFailure(t *testing.T) {
	needEnv(t)
	ipamDir := filepath.Join(env.Dir, "ipam")
	before := countFiles(ipamDir)
	shimsBefore := countShims()
	_, err := env.Runtime.RunPodSandbox(ctx(t), podConfig(t, "broken"), "gvisor-broken")
	if err == nil {
		t.Fatal("a sandbox started with a broken runsc platform")
	}
	if !strings.Contains(err.Error(), "runsc") || !strings.Contains(err.Error(), "no-such-platform") {
		t.Errorf("error does not name runsc and the reason: %v", err)
	}
	if after := countFiles(ipamDir); after != before {
		t.Errorf("IPAM files %d before, %d after: an address leaked", before, after)
	}
	eventually(t, 20*time.Second, "no shim left", func() error {
		if n := countShims(); n > shimsBefore {
			return fmt.Errorf("%d shims before, %d after", shimsBefore, n)
		}
		return nil
	})
	// Each pod has a netns and a shm mount; runsc's shared null-netns
	// (one per runsc root, by design) is no leak.
	var ms []string
	for _, m := range harness.MountsUnder(filepath.Join(env.Dir, "state")) {
		if filepath.Base(m) != "null-netns" {
			ms = append(ms, m)
		}
	}
	if len(ms) > 2*len(mustPods(t)) {
		t.Errorf("mounts left under the state dir: %v", ms)
	}
	ents, _ := os.ReadDir(filepath.Join(env.Dir, "state", "netns"))
	pods, _ := env.Runtime.ListPodSandbox(ctx(t), nil)
	if len(ents) > len(pods) {
		t.Errorf("%d netns for %d pods", len(ents), len(pods))
	}
	c := ctrdClient(t)
	list, err := c.Containers(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range list {
		found := false
		for _, p := range pods {
			found = found || p.Id == ct.ID()
		}
		if !found {
			if _, err := env.Runtime.ContainerStatus(ctx(t), ct.ID(), false); err != nil {
				t.Errorf("containerd container %s is left behind", ct.ID())
			}
		}
	}
}

// countShims counts the shim processes serving this run's containerd.
func countShims() int {
	n := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "containerd-shim") && strings.Contains(string(cmd), env.Dir) {
			n++
		}
	}
	return n
}

func mustPods(t *testing.T) []*runtime.PodSandbox {
	pods, err := env.Runtime.ListPodSandbox(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// countFiles counts host-local's address reservations (files named by IP).
func countFiles(dir string) int {
	n := 0
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && net.ParseIP(info.Name()) != nil {
			n++
		}
		return nil
	})
	return n
}

// assertNoShims checks that no shim process serves the given sandboxes.
func assertNoShims(t *testing.T, ids []string) {
	t.Helper()
	eventually(t, 20*time.Second, "shims gone", func() error {
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
			if err != nil || !strings.Contains(string(cmd), "containerd-shim") {
				continue
			}
			for _, id := range ids {
				if strings.Contains(string(cmd), id) {
					return fmt.Errorf("shim %s still serves %s", p.Name(), id)
				}
			}
		}
		return nil
	})
}
