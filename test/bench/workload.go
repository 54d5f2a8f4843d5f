package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

// target is one CRI runtime under test.
type target struct {
	name string
	rt   internalapi.RuntimeService
	img  internalapi.ImageManagerService
	// pids are the processes whose memory and CPU are the runtime's cost:
	// crimux's own, and the containerd each one needs.
	pids map[string]int
}

// bench holds the environment and the samples.
type bench struct {
	env     *harness.Env
	targets []*target
	plan    plan
	seq     int
	mu      sync.Mutex
	samples map[string]map[string][]time.Duration // "handler/op" → runtime → samples
	order   []string                              // "handler/op" in first-seen order
	// leaveLast: the last level of the scale phase is left for the
	// environment's teardown (killing a thousand pods' shims is minutes
	// faster than removing them one by one; nothing measured follows).
	leaveLast bool
}

const (
	rtContainerd = "containerd"
	rtCrimux     = "crimux"
	benchLabel   = "crimux.bench"
)

// The processes whose memory and CPU are measured, as results.json names them.
const (
	procCrimux           = "crimux"
	procCrimuxContainerd = "containerd (crimux's)"
	procContainerdCRI    = "containerd (with CRI)"
)

func newBench(env *harness.Env, cc *harness.ContainerdCRI, p plan) *bench {
	return &bench{
		env:  env,
		plan: p,
		targets: []*target{
			{name: rtContainerd, rt: cc.Runtime, img: cc.Image, pids: map[string]int{procContainerdCRI: cc.PID()}},
			{name: rtCrimux, rt: env.Runtime, img: env.Image, pids: map[string]int{procCrimux: env.CrimuxPID(), procCrimuxContainerd: env.ContainerdPID()}},
		},
		samples: map[string]map[string][]time.Duration{},
	}
}

// ordered is the targets in the order iteration i runs them: alternating,
// so neither always runs on a machine the other just warmed or loaded.
func (b *bench) ordered(i int) []*target {
	if i%2 == 0 {
		return b.targets
	}
	return []*target{b.targets[1], b.targets[0]}
}

func (b *bench) record(handler, op, rt string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := handler + "/" + op
	m := b.samples[key]
	if m == nil {
		m = map[string][]time.Duration{}
		b.samples[key] = m
		b.order = append(b.order, key)
	}
	m[rt] = append(m[rt], d)
}

func ctxT(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func (b *bench) pullImages(ctx context.Context) error {
	for _, t := range b.targets {
		if _, err := t.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: harness.Busybox}, nil, nil); err != nil {
			return fmt.Errorf("%s: pull %s: %w", t.name, harness.Busybox, err)
		}
	}
	return nil
}

func (b *bench) podConfig(phase string) *runtimeapi.PodSandboxConfig {
	b.mu.Lock()
	b.seq++
	n := b.seq
	b.mu.Unlock()
	uid := fmt.Sprintf("bench-%s-%d-%d", phase, n, time.Now().UnixNano())
	name := fmt.Sprintf("%s-%d", phase, n)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(b.env.Dir, "logs", uid),
		Labels:       map[string]string{benchLabel: b.env.RunID, "phase": phase},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			// As the kubelet does with cgroupfs: a pod cgroup below a QoS one,
			// here below the run's own cgroup (swept by the harness).
			CgroupParent: fmt.Sprintf("%s%s/bench/pod%s", harness.CgroupPrefix, b.env.RunID, uid),
		},
	}
}

func ctrConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: harness.Busybox},
		Command:  []string{"sleep", "3600"},
		LogPath:  "app.log",
		// What the kubelet sends for a plain BestEffort container: the
		// default masked and read-only paths and its resources.
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				MaskedPaths: []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
					"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
					"/sys/firmware", "/sys/devices/virtual/powercap"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			},
		},
	}
}

// pod is one started pod.
type pod struct {
	id, ctr string
}

// startPod runs RunPodSandbox, CreateContainer and StartContainer, recording
// each (and the whole) when rec is set.
func (b *bench) startPod(t *target, handler, phase string, rec bool) (pod, error) {
	ctx, cancel := ctxT(2 * time.Minute)
	defer cancel()
	cfg := b.podConfig(phase)
	t0 := time.Now()
	id, err := t.rt.RunPodSandbox(ctx, cfg, handler)
	if err != nil {
		return pod{}, fmt.Errorf("%s: RunPodSandbox: %w", t.name, err)
	}
	t1 := time.Now()
	cid, err := t.rt.CreateContainer(ctx, id, ctrConfig(), cfg)
	if err != nil {
		return pod{id: id}, fmt.Errorf("%s: CreateContainer: %w", t.name, err)
	}
	t2 := time.Now()
	if err := t.rt.StartContainer(ctx, cid); err != nil {
		return pod{id: id, ctr: cid}, fmt.Errorf("%s: StartContainer: %w", t.name, err)
	}
	t3 := time.Now()
	if rec {
		b.record(handler, "RunPodSandbox", t.name, t1.Sub(t0))
		b.record(handler, "CreateContainer", t.name, t2.Sub(t1))
		b.record(handler, "StartContainer", t.name, t3.Sub(t2))
		b.record(handler, "whole pod start", t.name, t3.Sub(t0))
	}
	return pod{id: id, ctr: cid}, nil
}

// removePod stops and removes a pod (its container with it).
func (b *bench) removePod(t *target, p pod) error {
	ctx, cancel := ctxT(2 * time.Minute)
	defer cancel()
	if err := t.rt.StopPodSandbox(ctx, p.id); err != nil {
		return fmt.Errorf("%s: StopPodSandbox: %w", t.name, err)
	}
	if err := t.rt.RemovePodSandbox(ctx, p.id); err != nil {
		return fmt.Errorf("%s: RemovePodSandbox: %w", t.name, err)
	}
	return nil
}

// timed runs f and records its duration under op.
func (b *bench) timed(handler, op string, t *target, f func(ctx context.Context) error) error {
	ctx, cancel := ctxT(2 * time.Minute)
	defer cancel()
	start := time.Now()
	if err := f(ctx); err != nil {
		return fmt.Errorf("%s: %s: %w", t.name, op, err)
	}
	b.record(handler, op, t.name, time.Since(start))
	return nil
}

// lifecycle is one pod's whole life, every call timed.
func (b *bench) lifecycle(t *target, handler string) error {
	p, err := b.startPod(t, handler, "serial", true)
	if err != nil {
		if p.id != "" {
			_ = b.removePod(t, p)
		}
		return err
	}
	steps := []struct {
		op string
		f  func(ctx context.Context) error
	}{
		{"PodSandboxStatus", func(ctx context.Context) error { _, err := t.rt.PodSandboxStatus(ctx, p.id, false); return err }},
		{"ContainerStatus", func(ctx context.Context) error { _, err := t.rt.ContainerStatus(ctx, p.ctr, false); return err }},
		{"ExecSync", func(ctx context.Context) error {
			_, _, err := t.rt.ExecSync(ctx, p.ctr, []string{"true"}, 30*time.Second)
			return err
		}},
	}
	for _, s := range steps {
		if err := b.timed(handler, s.op, t, s.f); err != nil {
			_ = b.removePod(t, p)
			return err
		}
	}
	td := time.Now()
	teardown := []struct {
		op string
		f  func(ctx context.Context) error
	}{
		{"StopContainer", func(ctx context.Context) error { return t.rt.StopContainer(ctx, p.ctr, 0) }},
		{"RemoveContainer", func(ctx context.Context) error { return t.rt.RemoveContainer(ctx, p.ctr) }},
		{"StopPodSandbox", func(ctx context.Context) error { return t.rt.StopPodSandbox(ctx, p.id) }},
		{"RemovePodSandbox", func(ctx context.Context) error { return t.rt.RemovePodSandbox(ctx, p.id) }},
	}
	for _, s := range teardown {
		if err := b.timed(handler, s.op, t, s.f); err != nil {
			_ = b.removePod(t, p)
			return err
		}
	}
	b.record(handler, "teardown (stop+remove both)", t.name, time.Since(td))
	return nil
}

// parallelRound starts n pods at once and records the time until all run,
// then removes them at once.
func (b *bench) parallelRound(t *target, handler string, n int) error {
	pods := make([]pod, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], errs[i] = b.startPod(t, handler, "parallel", false)
		}()
	}
	wg.Wait()
	started := time.Since(start)
	var firstErr error
	for _, e := range errs {
		if e != nil && firstErr == nil {
			firstErr = e
		}
	}
	start = time.Now()
	for i := range n {
		if pods[i].id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.removePod(t, pods[i]); err != nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	removed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	b.record(handler, fmt.Sprintf("%d pods started in parallel", n), t.name, started)
	b.record(handler, fmt.Sprintf("%d pods removed in parallel", n), t.name, removed)
	return nil
}

// populate starts pods until t runs want of them, six at a time.
func (b *bench) populate(t *target, handler string, have []pod, want int) ([]pod, error) {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i := len(have); i < want; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := b.startPod(t, handler, "scale", false)
			mu.Lock()
			defer mu.Unlock()
			if p.id != "" {
				have = append(have, p)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return have, firstErr
}

// depopulate removes pods, six at a time.
func (b *bench) depopulate(t *target, pods []pod) error {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.removePod(t, p); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// listOp is one call of the list phase; costly ones (the stats lists,
// seconds with hundreds of pods) are sampled less.
type listOp struct {
	op     string
	costly bool
	f      func(ctx context.Context) error
}

// listOps are the calls the list phase times at each level.
func listOps(t *target, pods []pod, i int) []listOp {
	p := pods[i%len(pods)]
	return []listOp{
		{"ListPodSandbox", false, func(ctx context.Context) error { _, err := t.rt.ListPodSandbox(ctx, nil); return err }},
		{"ListContainers", false, func(ctx context.Context) error { _, err := t.rt.ListContainers(ctx, nil); return err }},
		{"ListContainerStats", true, func(ctx context.Context) error { _, err := t.rt.ListContainerStats(ctx, nil); return err }},
		{"ListPodSandboxStats", true, func(ctx context.Context) error { _, err := t.rt.ListPodSandboxStats(ctx, nil); return err }},
		{"PodSandboxStatus", false, func(ctx context.Context) error { _, err := t.rt.PodSandboxStatus(ctx, p.id, false); return err }},
		{"ContainerStatus", false, func(ctx context.Context) error { _, err := t.rt.ContainerStatus(ctx, p.ctr, false); return err }},
	}
}

// removeAll removes every pod this run made on every target (after a
// failure, so the run's cleanup finds nothing running).
func (b *bench) removeAll() {
	for _, t := range b.targets {
		ctx, cancel := ctxT(5 * time.Minute)
		pods, err := t.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{benchLabel: b.env.RunID}})
		cancel()
		if err != nil {
			continue
		}
		var ps []pod
		for _, s := range pods {
			ps = append(ps, pod{id: s.Id})
		}
		_ = b.depopulate(t, ps)
	}
}

// cpuProfile saves a CPU profile of crimux over d, taken through its debug
// endpoint, to path.
func (b *bench) cpuProfile(d time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.env.DebugAddr, int(d.Seconds()))
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
