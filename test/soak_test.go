package test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var soakCycles = flag.Int("soak", 0, "TestSoak: create/start/exec/stop/remove cycles of a two-container pod (0: skip)")

// TestSoak runs a two-container pod through its whole life N times and
// compares the node before and after: nothing may be left (netns, mounts,
// containerd containers, tasks, snapshots, leases, shims, runsc processes,
// pod IPs, NAT rules), and crimux's goroutines and open fds must come back
// to within a small bound. It prints what it measured.
func TestSoak(t *testing.T) {
	needEnv(t)
	if *soakCycles <= 0 {
		t.Skip("-soak N not given")
	}
	pullBusybox(t)
	cycle := func(i int) error {
		pod := podConfig(t, fmt.Sprintf("soak-%d", i))
		pod.PortMappings = []*runtime.PortMapping{{ContainerPort: 8080, HostPort: 31234}} // NAT rules made and removed each cycle
		id, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		web, err := env.Runtime.CreateContainer(ctx(t), id, ctrConfig("web", "httpd", "-f", "-p", "8080"), pod)
		if err == nil {
			err = env.Runtime.StartContainer(ctx(t), web)
		}
		if err != nil {
			return fmt.Errorf("web: %w", err)
		}
		side, err := env.Runtime.CreateContainer(ctx(t), id, ctrConfig("side", "sleep", "3600"), pod)
		if err == nil {
			err = env.Runtime.StartContainer(ctx(t), side)
		}
		if err != nil {
			return fmt.Errorf("side: %w", err)
		}
		if _, _, err := env.Runtime.ExecSync(ctx(t), side, []string{"sh", "-c", "echo soak; cat /etc/hostname"}, 10*time.Second); err != nil {
			return fmt.Errorf("ExecSync: %w", err)
		}
		if err := env.Runtime.StopContainer(ctx(t), side, 2); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
		if err := env.Runtime.StopPodSandbox(ctx(t), id); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		if err := env.Runtime.RemovePodSandbox(ctx(t), id); err != nil {
			return fmt.Errorf("RemovePodSandbox: %w", err)
		}
		return nil
	}
	// One cycle first: images unpacked, the pause image made, gVisor's
	// null netns mounted, caches warm.
	if err := cycle(-1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	before := snapshot(t)
	start := time.Now()
	for i := 0; i < *soakCycles; i++ {
		if err := cycle(i); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second) // exit watchers and exec reapers finish
	noLeaks(t, before)
	after := snapshot(t)
	handler := env.Handler
	if handler == "" {
		handler = "runc"
	}
	fmt.Printf("soak %s: %d cycles in %s (%.2f/s); goroutines %d -> %d, fds %d -> %d, threads %d -> %d, RSS %d -> %d KiB\n",
		handler, *soakCycles, took.Round(time.Second), float64(*soakCycles)/took.Seconds(),
		before.Goroutines, after.Goroutines, before.FDs, after.FDs, before.Threads, after.Threads, before.RSSKiB, after.RSSKiB)
	if after.Goroutines > before.Goroutines+10 {
		t.Errorf("goroutines grew from %d to %d", before.Goroutines, after.Goroutines)
	}
	if after.FDs > before.FDs+10 {
		t.Errorf("open fds grew from %d to %d", before.FDs, after.FDs)
	}
}
