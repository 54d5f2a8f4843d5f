package router

import (
	"context"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The handler label of a CRI call: configured names, the pod's handler for
// calls about a pod or container, and never a string a client made up.
func TestRequestHandlerLabel(t *testing.T) {
	f := newFixture(t, t.TempDir())
	sb, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: podCfg("labels"), RuntimeHandler: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  any
		want string
	}{
		{&runtime.RunPodSandboxRequest{}, "runc"},
		{&runtime.RunPodSandboxRequest{RuntimeHandler: "fast"}, "fast"},
		{&runtime.RunPodSandboxRequest{RuntimeHandler: "x\"}evil"}, "unknown"},
		{&runtime.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId}, "fast"},
		{&runtime.PodSandboxStatusRequest{PodSandboxId: "nosuch"}, ""},
		{&runtime.ContainerStatusRequest{ContainerId: "nosuch"}, ""},
		{&runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "x", RuntimeHandler: "fast"}}, "fast"},
		{&runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "x", RuntimeHandler: "made-up"}}, "unknown"},
		{&runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: "x"}}, ""},
		{&runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{RuntimeHandler: "runc"}}}, "runc"},
		{&runtime.StatusRequest{}, ""},
	} {
		if got := f.r.requestHandler(tc.req); got != tc.want {
			t.Errorf("%T %v: handler label %q, want %q", tc.req, tc.req, got, tc.want)
		}
	}
}
