package test

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkPodSandboxStatus measures a status call on a running pod of the
// handler: crimux answers from its records, so gVisor pods should cost what
// runc pods cost (containerd's CRI asks runsc each time).
func BenchmarkPodSandboxStatus(b *testing.B) {
	if env == nil {
		b.Skip("integration environment not started (-short)")
	}
	t := &testing.T{}
	pod := podConfig(t, "bench")
	id, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = env.Runtime.StopPodSandbox(ctx(t), id)
		_ = env.Runtime.RemovePodSandbox(ctx(t), id)
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := env.Runtime.PodSandboxStatus(ctx(t), id, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunPodSandbox measures starting and removing a pod with one container.
func BenchmarkRunPodSandbox(b *testing.B) {
	if env == nil {
		b.Skip("integration environment not started (-short)")
	}
	t := &testing.T{}
	pullBusybox(t)
	var run, ctr time.Duration
	for i := 0; i < b.N; i++ {
		pod := podConfig(t, "benchrun")
		start := time.Now()
		id, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
		if err != nil {
			b.Fatal(err)
		}
		run += time.Since(start)
		start = time.Now()
		cid, err := env.Runtime.CreateContainer(ctx(t), id, ctrConfig("c", "sleep", "60"), pod)
		if err == nil {
			err = env.Runtime.StartContainer(ctx(t), cid)
		}
		if err != nil {
			b.Fatal(err)
		}
		ctr += time.Since(start)
		_ = env.Runtime.StopPodSandbox(ctx(t), id)
		_ = env.Runtime.RemovePodSandbox(ctx(t), id)
	}
	b.ReportMetric(float64(run.Milliseconds())/float64(b.N), "ms-runpod/op")
	b.ReportMetric(float64(ctr.Milliseconds())/float64(b.N), "ms-container/op")
}

// BenchmarkPodSandboxStatusRaw is the same call over a plain gRPC client, to
// separate crimux's cost from the kubelet client's.
func BenchmarkPodSandboxStatusRaw(b *testing.B) {
	if env == nil {
		b.Skip("integration environment not started (-short)")
	}
	t := &testing.T{}
	pod := podConfig(t, "benchraw")
	id, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = env.Runtime.StopPodSandbox(ctx(t), id)
		_ = env.Runtime.RemovePodSandbox(ctx(t), id)
	}()
	rc := rawClient(t)
	req := &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}
	c := ctx(t)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rc.PodSandboxStatus(c, req); err != nil {
			b.Fatal(err)
		}
	}
}
