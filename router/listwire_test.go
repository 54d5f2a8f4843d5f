package router

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// serveGRPC serves f's router on a unix socket, as crimux does, and
// returns a client of it.
func serveGRPC(t testing.TB, f *fixture) runtime.RuntimeServiceClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "crimux.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(f.r.Interceptor))
	f.r.Register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime.NewRuntimeServiceClient(conn)
}

// The list items sent in their kept encoding are, on the client, the
// items crimux built: every field, every state, with filters, again from
// the kept encoding, and after states change.
func TestListsOverGRPCAreTheLists(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	c := serveGRPC(t, f)
	var pods, ctrs []string
	for i, name := range []string{"a", "b", "c"} {
		pod := podCfg(name)
		pod.Labels = map[string]string{"app": name, "n": string(rune('0' + i))}
		pod.Annotations = map[string]string{"note": "x" + name}
		sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod, RuntimeHandler: "fast"})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, sb.PodSandboxId)
		cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: pod,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c" + name, Attempt: uint32(i)},
				Image: &runtime.ImageSpec{Image: "busybox"}, Labels: map[string]string{"app": name}, Annotations: map[string]string{"k": "v"}}})
		if err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, cr.ContainerId)
	}
	same := func(when string) {
		t.Helper()
		for _, filter := range []*runtime.PodSandboxFilter{nil, {LabelSelector: map[string]string{"app": "b"}}, {State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_NOTREADY}}} {
			want, err := f.r.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: ListPodSandbox(%v) over gRPC:\n%v\nwant\n%v", when, filter, got, want)
			}
		}
		for _, filter := range []*runtime.ContainerFilter{nil, {PodSandboxId: pods[1]}, {State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_EXITED}}} {
			want, err := f.r.ListContainers(ctx, &runtime.ListContainersRequest{Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ListContainers(ctx, &runtime.ListContainersRequest{Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: ListContainers(%v) over gRPC:\n%v\nwant\n%v", when, filter, got, want)
			}
		}
	}
	same("first")
	same("again")
	// States change: a container runs, one exits, a pod stops.
	if _, err := f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrs[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrs[1]}); err != nil {
		t.Fatal(err)
	}
	f.r.TaskExited(ctrs[1], backends.TaskState{ExitCode: 1, ExitedAt: time.Now()})
	if _, err := f.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pods[2]}); err != nil {
		t.Fatal(err)
	}
	same("after changes")
	got, err := c.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]runtime.ContainerState{}
	for _, it := range got.Containers {
		states[it.Id] = it.State
	}
	if states[ctrs[0]] != runtime.ContainerState_CONTAINER_RUNNING || states[ctrs[1]] != runtime.ContainerState_CONTAINER_EXITED || states[ctrs[2]] != runtime.ContainerState_CONTAINER_CREATED {
		t.Errorf("states over gRPC %v", states)
	}
}
