package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/sandbox"
)

type fakeCNI struct {
	mu     sync.Mutex
	AddErr error
	// AddGate, when set, holds every ADD until it is closed.
	AddGate chan struct{}
	adds    int
	dels    int
}

func (f *fakeCNI) AddNetworkList(_ context.Context, _ *libcni.NetworkConfigList, _ *libcni.RuntimeConf) (types.Result, error) {
	f.mu.Lock()
	gate := f.AddGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds++
	if f.AddErr != nil {
		return nil, f.AddErr
	}
	zero := 0
	r := &current.Result{CNIVersion: "1.0.0", Interfaces: []*current.Interface{{Name: "eth0", Sandbox: "/x"}}}
	ip, n, _ := net.ParseCIDR("10.1.2.3/24")
	n.IP = ip
	r.IPs = []*current.IPConfig{{Interface: &zero, Address: *n}}
	return r, nil
}

func (f *fakeCNI) DelNetworkList(_ context.Context, _ *libcni.NetworkConfigList, _ *libcni.RuntimeConf) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels++
	return nil
}

type fixture struct {
	r      *Router
	drv    *fakeDriver
	cni    *fakeCNI
	cfg    *conf.Config
	netDir string
}

func newFixture(t testing.TB, root string) *fixture {
	t.Helper()
	netDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(netDir, "10.conflist"), []byte(cni.DefaultConflist("n", "b", "10.1.2.0/24", false)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &conf.Config{
		RootDir: root, StateDir: filepath.Join(root, "state"), DefaultHandler: "runc", CgroupDriver: "cgroupfs",
		SandboxImage: "registry.k8s.io/pause:3.10",
		Handlers:     map[string]conf.Handler{"runc": {Driver: "containerd"}, "fast": {Driver: "containerd"}},
	}
	drv := &fakeDriver{}
	fc := &fakeCNI{}
	imgs := &fakeImages{imgs: []image.Image{
		{ID: "sha256:pause", RepoTags: []string{"registry.k8s.io/pause:3.10"}},
		{ID: "sha256:bb", RepoTags: []string{"docker.io/library/busybox:latest"}, User: "1000"},
	}}
	r, err := New(Options{
		Config:        cfg,
		Drivers:       map[string]backends.Driver{"containerd": drv},
		DefaultDriver: "containerd",
		Images:        image.New(imgs, nil, cfg.SandboxImage, map[string]string{"": "overlayfs"}, quietLog()),
		CNI:           cni.New(nil, netDir, t.TempDir(), time.Second, cni.WithPlugin(fc)),
		Log:           quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{r: r, drv: drv, cni: fc, cfg: cfg, netDir: netDir}
}

// addDriver adds a driver (and any handler of cfg it runs) to the router.
func (f *fixture) addDriver(t testing.TB, name string, d backends.Driver) {
	t.Helper()
	drivers := map[string]backends.Driver{name: d}
	for n, x := range f.r.set.Load().drivers {
		drivers[n] = x
	}
	if err := f.r.Reconfigure(f.cfg, drivers); err != nil {
		t.Fatal(err)
	}
}

func podCfg(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"},
		Labels:   map[string]string{"app": name},
		Linux:    &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}},
	}
}

func netPod(name string) *runtime.PodSandboxConfig {
	c := podCfg(name)
	c.Linux = &runtime.LinuxPodSandboxConfig{}
	return c
}

func code(err error) codes.Code { return status.Code(toStatus(err)) }

func TestRunPodSandboxHandlers(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		desc, handler, wantRuntime string
		wantCode                   codes.Code
		wantMsg                    string
	}{
		{desc: "empty is the default handler", handler: "", wantRuntime: "runc"},
		{desc: "named handler", handler: "fast", wantRuntime: "fast"},
		{desc: "unknown handler lists the configured", handler: "kata", wantCode: codes.InvalidArgument, wantMsg: "unknown runtime handler \"kata\" (configured: fast, runc)"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("p-" + tc.handler), RuntimeHandler: tc.handler})
			if tc.wantCode != codes.OK {
				if code(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st, err := f.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
			if err != nil || st.Status.RuntimeHandler != tc.wantRuntime {
				t.Fatalf("status %v %v", st, err)
			}
			calls := f.drv.runtimes[tc.wantRuntime].Calls()
			if len(calls) == 0 || calls[len(calls)-1] != "RunSandbox "+resp.PodSandboxId {
				t.Fatalf("calls on %s: %v", tc.wantRuntime, calls)
			}
		})
	}
}

func TestRunPodSandboxValidation(t *testing.T) {
	f := newFixture(t, t.TempDir())
	for _, tc := range []struct {
		desc string
		cfg  *runtime.PodSandboxConfig
	}{
		{desc: "nil config"},
		{desc: "nil metadata", cfg: &runtime.PodSandboxConfig{}},
		{desc: "no uid", cfg: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "a", Namespace: "b"}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: tc.cfg})
			if code(err) != codes.InvalidArgument {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// A backend failure rolls everything back: CNI DEL, netns, pod dir, name, record.
func TestRunPodSandboxRollback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace and needs root")
	}
	root := t.TempDir()
	f := newFixture(t, root)
	rt := f.drv.Runtime("runc").(*fakeRuntime)
	rt.RunSandboxErr = errors.New("runtime exploded")
	_, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: netPod("rb")})
	if err == nil || !strings.Contains(err.Error(), "runtime exploded") || !strings.Contains(err.Error(), "runc") {
		t.Fatalf("err = %v", err)
	}
	if f.cni.adds != 1 || f.cni.dels != 1 {
		t.Errorf("cni adds=%d dels=%d, want 1/1", f.cni.adds, f.cni.dels)
	}
	for _, d := range []string{filepath.Join(root, "state", "netns"), filepath.Join(root, "state", "pods"), filepath.Join(root, "sandboxes")} {
		ents, _ := os.ReadDir(d)
		if len(ents) != 0 {
			t.Errorf("%s not empty after rollback: %v", d, ents)
		}
	}
	rt.RunSandboxErr = nil
	resp, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: netPod("rb")})
	if err != nil {
		t.Fatalf("retry after rollback: %v", err)
	}
	st, _ := f.r.PodSandboxStatus(context.Background(), &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
	if st.Status.Network.Ip != "10.1.2.3" {
		t.Errorf("ip %q", st.Status.Network.Ip)
	}
	if _, err := f.r.StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if f.cni.dels != 2 {
		t.Errorf("stop did not tear down the network: dels=%d", f.cni.dels)
	}
	if _, err := f.r.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
}

// CNI failure: the sandbox the runtime made meanwhile is removed, the netns
// goes and nothing is recorded; a runtime that waits for the network gets
// the CNI error and makes nothing.
func TestRunPodSandboxCNIFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace and needs root")
	}
	for _, waits := range []bool{false, true} {
		t.Run(fmt.Sprintf("runtime-waits-for-network=%t", waits), func(t *testing.T) {
			root := t.TempDir()
			f := newFixture(t, root)
			rt := f.drv.Runtime("runc").(*fakeRuntime)
			rt.WaitsForNetwork = waits
			f.cni.AddErr = errors.New("no more addresses")
			_, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: netPod("cnifail")})
			if err == nil || !strings.Contains(err.Error(), "no more addresses") {
				t.Fatalf("err = %v", err)
			}
			ents, _ := os.ReadDir(filepath.Join(root, "state", "netns"))
			if len(ents) != 0 {
				t.Errorf("netns left: %v", ents)
			}
			calls := rt.Calls()
			if len(calls) == 0 || !strings.HasPrefix(calls[0], "RunSandbox ") {
				t.Fatalf("runtime calls %v: want RunSandbox first", calls)
			}
			id := strings.TrimPrefix(calls[0], "RunSandbox ")
			want := []string{"RunSandbox " + id, "RemoveSandbox " + id}
			if waits {
				want = want[:1] // it failed: nothing to remove
			}
			if !slices.Equal(calls, want) {
				t.Errorf("runtime calls %v, want %v", calls, want)
			}
			if l, _ := f.r.ListPodSandbox(context.Background(), &runtime.ListPodSandboxRequest{}); len(l.Items) != 0 {
				t.Errorf("pods listed after the failure: %v", l.Items)
			}
		})
	}
}

// The runtime starts the sandbox while CNI sets the network up (the CNI ADD
// here only returns once RunSandbox was called); a runtime that reads the
// netns waits for the ADD.
func TestRunPodSandboxOverlapsNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace and needs root")
	}
	root := t.TempDir()
	f := newFixture(t, root)
	rt := f.drv.Runtime("runc").(*fakeRuntime)
	gate := make(chan struct{})
	rt.SandboxStarted = gate
	f.cni.AddGate = gate
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	remove := func(id string) {
		t.Cleanup(func() {
			_, _ = f.r.StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: id})
			_, _ = f.r.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id})
		})
	}
	resp, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: netPod("overlap")})
	if err != nil {
		t.Fatal(err)
	}
	remove(resp.PodSandboxId)
	st, err := f.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
	if err != nil || st.Status.Network.Ip != "10.1.2.3" {
		t.Fatalf("status %v, %v: want the CNI result's IP", st, err)
	}

	// A runtime that waits: it sees the network ready before it goes on.
	rt.WaitsForNetwork = true
	gate = make(chan struct{})
	f.cni.mu.Lock()
	f.cni.AddGate = gate
	f.cni.mu.Unlock()
	go func() { time.Sleep(50 * time.Millisecond); close(gate) }()
	resp, err = f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: netPod("overlap2")})
	if err != nil {
		t.Fatal(err)
	}
	remove(resp.PodSandboxId)
	if !slices.Contains(rt.Calls(), "network ready "+resp.PodSandboxId) {
		t.Errorf("calls %v: the runtime did not get past WaitNetwork", rt.Calls())
	}
}

func TestContainerLifecycleAndExitEvents(t *testing.T) {
	root := t.TempDir()
	f := newFixture(t, root)
	ctx := context.Background()
	pod := podCfg("c")
	pod.LogDirectory = "/var/log/pods/x"
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}, LogPath: "a.log", Labels: map[string]string{"k": "v"}}
	cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg}); code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), cr.ContainerId) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId[:12]}); err != nil {
		t.Fatalf("start by prefix: %v", err)
	}
	if _, err := f.r.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); code(err) != codes.FailedPrecondition {
		t.Fatalf("second start: %v", err)
	}
	st, _ := f.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if st.Status.State != runtime.ContainerState_CONTAINER_RUNNING || st.Status.LogPath != "/var/log/pods/x/a.log" || st.Status.ImageRef != "sha256:bb" {
		t.Fatalf("status %+v", st.Status)
	}
	ex, err := f.r.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"x"}})
	if err != nil || ex.ExitCode != 3 || string(ex.Stdout) != "out" {
		t.Fatalf("exec %v %v", ex, err)
	}
	// The exit arrives as an event.
	f.r.TaskExited(cr.ContainerId, backends.TaskState{ExitCode: 137, ExitedAt: time.Now()})
	st, _ = f.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if st.Status.State != runtime.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 137 || st.Status.Reason != "Error" {
		t.Fatalf("after exit %+v", st.Status)
	}
	if _, err := f.r.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"x"}}); code(err) != codes.FailedPrecondition {
		t.Fatalf("exec in exited: %v", err)
	}
	// A new router over the same root recovers the records.
	g := newFixture(t, root)
	if err := g.r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := g.r.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{LabelSelector: map[string]string{"k": "v"}}})
	if len(list.Containers) != 1 || list.Containers[0].State != runtime.ContainerState_CONTAINER_EXITED {
		t.Fatalf("recovered list %+v", list.Containers)
	}
	if _, err := g.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg}); code(err) != codes.AlreadyExists {
		t.Fatalf("names not recovered: %v", err)
	}
	if _, err := g.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId}); code(err) != codes.NotFound {
		t.Fatalf("container after pod removal: %v", err)
	}
}

// A pod whose handler was removed from the config can still be stopped and removed.
func TestRemovedHandler(t *testing.T) {
	root := t.TempDir()
	f := newFixture(t, root)
	ctx := context.Background()
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg("gone"), RuntimeHandler: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, root)
	delete(g.cfg.Handlers, "fast")
	if err := g.r.Reconfigure(g.cfg, map[string]backends.Driver{"containerd": g.drv}); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	calls := g.drv.runtimes["fast"].Calls()
	if len(calls) < 2 || calls[len(calls)-1] != "RemoveSandbox "+sb.PodSandboxId {
		t.Fatalf("calls on the removed handler: %v", calls)
	}
}

func TestIdempotentStopRemove(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	if _, err := f.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: "missing"}); err != nil {
		t.Error(err)
	}
	if _, err := f.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: "missing"}); err != nil {
		t.Error(err)
	}
	if _, err := f.r.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: "missing"}); err != nil {
		t.Error(err)
	}
	if _, err := f.r.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: "missing"}); err != nil {
		t.Error(err)
	}
	if _, err := f.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: "missing"}); code(err) != codes.NotFound {
		t.Error(err)
	}
}

func TestStatusConditions(t *testing.T) {
	f := newFixture(t, t.TempDir())
	f.drv.ReadyErr = errors.New("containerd down")
	st, err := f.r.Status(context.Background(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Status.Conditions[0]; c.Status || !strings.Contains(c.Message, "containerd down") {
		t.Errorf("runtime condition %+v", c)
	}
	if c := st.Status.Conditions[1]; !c.Status {
		t.Errorf("network condition %+v", c)
	}
	_ = os.Remove(filepath.Join(f.netDir, "10.conflist"))
	st, _ = f.r.Status(context.Background(), &runtime.StatusRequest{})
	if c := st.Status.Conditions[1]; c.Status || !strings.Contains(c.Message, "no network config found") {
		t.Errorf("network condition without config %+v", c)
	}
	names := []string{}
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "fast,runc," {
		t.Errorf("handlers %v", names)
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{sandbox.ErrNotFound, codes.NotFound},
		{backends.ErrNotFound, codes.NotFound},
		{image.ErrNotFound, codes.NotFound},
		{backends.ErrInvalid, codes.InvalidArgument},
		{&sandbox.NameTakenError{Name: "a", Holder: "b"}, codes.AlreadyExists},
		{backends.ErrPrecondition, codes.FailedPrecondition},
		{backends.ErrDeadline, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("other"), codes.Unknown},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.want {
			t.Errorf("%v → %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestUsernsValidation(t *testing.T) {
	f := newFixture(t, t.TempDir())
	for _, tc := range []struct {
		desc string
		u    *runtime.UserNamespace
		ok   bool
	}{
		{desc: "node", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, ok: true},
		{desc: "node with mappings", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: []*runtime.IDMapping{{Length: 1}}}},
		{desc: "pod (the fake handler has no user_namespaces feature)", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 1000, Length: 65536}}, Gids: []*runtime.IDMapping{{HostId: 1000, Length: 65536}}}},
		{desc: "pod with two mappings", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 1000, Length: 10}, {ContainerId: 10, HostId: 5000, Length: 10}}, Gids: []*runtime.IDMapping{{HostId: 1000, Length: 65536}}}},
		{desc: "pod without container ID 0", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 65536}}, Gids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 65536}}}},
		{desc: "container", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}},
		{desc: "target", u: &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := podCfg("userns-" + strings.ReplaceAll(tc.desc, " ", "-"))
			cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = tc.u
			_, err := f.r.RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: cfg})
			if tc.ok && err != nil || !tc.ok && code(err) != codes.InvalidArgument {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestUpdatePodSandboxResources(t *testing.T) {
	f := newFixture(t, t.TempDir())
	ctx := context.Background()
	cfg := netPod("resize")
	cfg.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 100}
	cfg.Linux.Overhead = &runtime.LinuxContainerResources{MemoryLimitInBytes: 10}
	resp, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.PodSandboxId
	rt := f.drv.runtimes["runc"]
	last := func() string { c := rt.Calls(); return c[len(c)-1] }
	if _, err := f.r.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope", Resources: &runtime.LinuxContainerResources{}}); code(err) != codes.NotFound {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := f.r.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: id}); code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "neither resources nor overhead") {
		t.Errorf("empty update: %v", err)
	}
	// Only resources given: the overhead stays the config's.
	if _, err := f.r.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 200}}); err != nil {
		t.Fatal(err)
	}
	if got := last(); got != "UpdateSandboxResources "+id+" 200+10" {
		t.Errorf("runtime call %q", got)
	}
	st, err := f.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil || !strings.Contains(st.Info["info"], `"podResources":{"memory_limit_in_bytes":200}`) {
		t.Errorf("verbose status after the update: %v %v", st.GetInfo(), err)
	}
	// A runtime that can't apply them: an error, and nothing recorded.
	rt.ResizeErr = errors.New("runsc update: no")
	if _, err := f.r.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Overhead: &runtime.LinuxContainerResources{MemoryLimitInBytes: 20}}); err == nil || !strings.Contains(err.Error(), "runsc update: no") {
		t.Errorf("failed apply: %v", err)
	}
	if res, over := currentPodResources(f.r.mustSandbox(t, id)); res.GetMemoryLimitInBytes() != 200 || over.GetMemoryLimitInBytes() != 10 {
		t.Errorf("after a failed apply: %v %v", res, over)
	}
	// A stopped pod's resources are recorded without the runtime.
	rt.ResizeErr = nil
	if _, err := f.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	n := len(rt.Calls())
	if _, err := f.r.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Overhead: &runtime.LinuxContainerResources{MemoryLimitInBytes: 30}}); err != nil {
		t.Fatal(err)
	}
	if len(rt.Calls()) != n {
		t.Errorf("a stopped pod's runtime was called: %v", rt.Calls()[n:])
	}
}

func (r *Router) mustSandbox(t *testing.T, id string) *sandbox.Sandbox {
	t.Helper()
	sb, err := r.sandboxes.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// Verbose Status info values are JSON documents: crictl info decodes each.
func TestStatusInfoIsJSON(t *testing.T) {
	f := newFixture(t, t.TempDir())
	st, err := f.r.Status(context.Background(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Info) == 0 {
		t.Fatal("no info in a verbose status")
	}
	for k, v := range st.Info {
		var doc map[string]any
		if err := json.Unmarshal([]byte(v), &doc); err != nil {
			t.Errorf("info %q is not a JSON object: %v: %.80s", k, err, v)
		}
	}
	var cfg struct{ StateDir string }
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil || cfg.StateDir != f.cfg.StateDir {
		t.Errorf("config info's state dir %q (%v), want %q", cfg.StateDir, err, f.cfg.StateDir)
	}
}

// The kubelet parses RuntimeVersion as a semantic version.
func TestVersionIsSemver(t *testing.T) {
	re := regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	for _, tc := range []struct{ release, commit, want string }{
		{"0.1.0-dev", "", "0.1.0-dev"},
		{"0.1.0-dev", "c84d14a", "0.1.0-dev+c84d14a"},
		{"0.1.0-dev", "c84d14a-dirty", "0.1.0-dev+c84d14a-dirty"},
		{"0.1.0", "v0.1.0-3-gabc1234-dirty", "0.1.0+v0.1.0-3-gabc1234-dirty"},
		{"0.1.0", "weird/branch_name..x", "0.1.0+weird.branch.name.x"},
		{"0.1.0", "--", "0.1.0"},
	} {
		got := semver(tc.release, tc.commit)
		if got != tc.want || !re.MatchString(got) {
			t.Errorf("semver(%q, %q) = %q, want %q (a semantic version)", tc.release, tc.commit, got, tc.want)
		}
	}
}

// A runtime that records the container while it creates it
// (backends.Container.Commit) and then fails: the record, the runtime's
// container and the name are all gone, and the retry works. A record that
// can't be written fails the create the same way.
func TestCreateContainerCommitRollback(t *testing.T) {
	root := t.TempDir()
	f := newFixture(t, root)
	ctx := context.Background()
	rt := f.drv.Runtime("runc").(*fakeRuntime)
	rt.Commits = true
	pod := podCfg("commit")
	sb, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "a"}, Image: &runtime.ImageSpec{Image: "busybox"}}
	records := filepath.Join(root, "containers")
	noRecord := func(when string) {
		t.Helper()
		if ents, _ := os.ReadDir(records); len(ents) != 0 {
			t.Errorf("%s: records left: %v", when, ents)
		}
		if l, _ := f.r.ListContainers(ctx, &runtime.ListContainersRequest{}); len(l.Containers) != 0 {
			t.Errorf("%s: listed: %v", when, l.Containers)
		}
	}
	removed := func(when string) {
		t.Helper()
		calls := rt.Calls()
		if last := calls[len(calls)-1]; !strings.HasPrefix(last, "RemoveContainer ") {
			t.Errorf("%s: the runtime's container was not removed: %v", when, calls)
		}
	}

	rt.CreateErr = errors.New("runtime exploded")
	if _, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg}); err == nil || !strings.Contains(err.Error(), "runtime exploded") {
		t.Fatalf("create that fails after its commit: %v", err)
	}
	if rt.CommitErr != nil {
		t.Fatalf("commit: %v", rt.CommitErr)
	}
	noRecord("after the runtime failed")
	removed("after the runtime failed")

	// The records directory is a file: the record can't be written.
	rt.CreateErr = nil
	if err := os.RemoveAll(records); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(records, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg}); err == nil || rt.CommitErr == nil {
		t.Fatalf("create whose record can't be written: %v (commit: %v)", err, rt.CommitErr)
	}
	removed("after the record failed")
	if err := os.Remove(records); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(records, 0o700); err != nil {
		t.Fatal(err)
	}
	noRecord("after the record failed")

	cr, err := f.r.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: cfg})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	st, err := f.r.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_CREATED || st.Status.User.GetLinux().GetUid() != 1000 {
		t.Fatalf("retried container: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(records, cr.ContainerId+".json")); err != nil {
		t.Errorf("record of the retried container: %v", err)
	}
}
