package router

import (
	"context"
	"fmt"
	"testing"

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
