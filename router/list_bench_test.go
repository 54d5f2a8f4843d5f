package router

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkListWith500Pods times ListPodSandbox and ListContainers over 500
// pods of one container each, answered from crimux's records.
func BenchmarkListWith500Pods(b *testing.B) {
	f := newFixture(b, b.TempDir())
	ctx := context.Background()
	for i := range 500 {
		resp, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg(fmt.Sprintf("p%d", i))})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: resp.PodSandboxId, SandboxConfig: podCfg(fmt.Sprintf("p%d", i)),
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("ListPodSandbox", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.r.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListContainers", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.r.ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// kubeletPods is a fixture with n pods of one container each, with the
// labels and annotations the kubelet sets.
func kubeletPods(b *testing.B, n int) *fixture {
	f := newFixture(b, b.TempDir())
	ctx := context.Background()
	kube := func(i int, kind string) map[string]string {
		return map[string]string{
			"io.kubernetes.pod.name": fmt.Sprintf("pod-%d", i), "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.uid": fmt.Sprintf("0c1d2e3f-4a5b-6c7d-8e9f-%012d", i), "io.kubernetes.container.name": kind,
		}
	}
	for i := range n {
		pod := podCfg(fmt.Sprintf("p%d", i))
		pod.Labels, pod.Annotations = kube(i, "POD"), kube(i, "POD")
		resp, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: resp.PodSandboxId, SandboxConfig: pod,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"},
				Labels: kube(i, "c"), Annotations: kube(i, "c")}}); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// BenchmarkListWith500PodsOnTheWire is crimux's own part of a relist with
// 500 pods: ListPodSandbox and ListContainers as served over gRPC (wire),
// and their encoding, as gRPC encodes them; no socket, no client.
func BenchmarkListWith500PodsOnTheWire(b *testing.B) {
	w := wire{kubeletPods(b, 500).r}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		pods, err := w.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
		if err != nil {
			b.Fatal(err)
		}
		ctrs, err := w.ListContainers(ctx, &runtime.ListContainersRequest{})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []proto.Message{pods, ctrs} {
			if _, err := proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkListWith500PodsOverGRPC times the same calls as a client sees
// them: through a gRPC server on a unix socket, with crimux's interceptor,
// the response encoded, sent and decoded. Pods and containers carry the
// labels and annotations the kubelet sets.
func BenchmarkListWith500PodsOverGRPC(b *testing.B) {
	f := kubeletPods(b, 500)
	ctx := context.Background()
	c := serveGRPC(b, f)
	pods, err := c.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) == 0 {
		b.Fatal("no pods", err)
	}
	ctrs, err := c.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) == 0 {
		b.Fatal("no containers", err)
	}
	b.Run("PodSandboxStatus", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pods.Items[0].Id}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ContainerStatus", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrs.Containers[0].Id}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListPodSandbox", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListContainers", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
