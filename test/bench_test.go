package test

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// benchPod runs a pod for a benchmark, removed when it ends.
func benchPod(b *testing.B, name string) (*testing.T, string) {
	if env == nil {
		b.Skip("integration environment not started (-short)")
	}
	t := &testing.T{}
	id, err := env.Runtime.RunPodSandbox(ctx(t), podConfig(t, name), env.Handler)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = env.Runtime.StopPodSandbox(ctx(t), id)
		_ = env.Runtime.RemovePodSandbox(ctx(t), id)
	})
	return t, id
}

// BenchmarkPodSandboxStatus measures a status call on a running pod of the
// handler: crimux answers from its records, so gVisor pods should cost what
// runc pods cost (containerd's CRI asks runsc each time).
func BenchmarkPodSandboxStatus(b *testing.B) {
	t, id := benchPod(b, "bench")
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
	t, id := benchPod(b, "benchraw")
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
