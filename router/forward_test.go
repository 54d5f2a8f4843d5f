package router

import (
	"context"
	"errors"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/sandbox"
)

// remoteRuntime is a runtime that owns its pods' network (a forwarded handler).
type remoteRuntime struct {
	*fakeRuntime
	sandbox backends.Sandbox // what RunSandbox was given
}

func (r *remoteRuntime) OwnsNetwork() bool { return true }
func (r *remoteRuntime) RunSandbox(ctx context.Context, sb backends.Sandbox) (backends.TaskState, error) {
	r.sandbox = sb
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING, IPs: []string{"10.9.0.7", "fd00::7"}}, nil
}

// remoteDriver is a driver whose outage touches only its own handlers.
type remoteDriver struct {
	rts      map[string]*remoteRuntime
	readyErr error
}

func (d *remoteDriver) Name() string { return "cri" }
func (d *remoteDriver) Runtime(h string) backends.Runtime {
	if d.rts[h] == nil {
		d.rts[h] = &remoteRuntime{fakeRuntime: &fakeRuntime{name: h}}
	}
	return d.rts[h]
}
func (d *remoteDriver) Ready(ctx context.Context) error             { return nil }
func (d *remoteDriver) Version(ctx context.Context) (string, error) { return "remote 1", nil }
func (d *remoteDriver) Close() error                                { return nil }
func (d *remoteDriver) HandlerReady(ctx context.Context, h string) error {
	return d.readyErr
}

// A pod of a handler whose runtime owns the network gets no netns and no
// CNI ADD from crimux, and the runtime's IPs; its record names its driver,
// which still reaches it after the handler is removed; a remote that is down
// makes only its handler not ready.
func TestNetworkOwningHandler(t *testing.T) {
	f := newFixture(t, t.TempDir())
	rd := &remoteDriver{rts: map[string]*remoteRuntime{}}
	f.cfg.Handlers["fwd"] = conf.Handler{Driver: "cri"}
	f.addDriver(t, "cri", rd)
	ctx := context.Background()

	id, err := f.r.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: netPod("remote"), RuntimeHandler: "fwd"})
	if err != nil {
		t.Fatal(err)
	}
	pod := id.PodSandboxId
	if got := rd.rts["fwd"].sandbox; got.NetNSPath != "" || got.Image != "" || got.WaitNetwork != nil {
		t.Errorf("the runtime was given netns %q, sandbox image %q: it owns the network and its images", got.NetNSPath, got.Image)
	}
	if f.cni.adds != 0 {
		t.Errorf("crimux ran %d CNI ADDs for a pod whose runtime owns its network", f.cni.adds)
	}
	st, err := f.r.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || st.Status.Network.Ip != "10.9.0.7" || len(st.Status.Network.AdditionalIps) != 1 || st.Status.Network.AdditionalIps[0].Ip != "fd00::7" {
		t.Errorf("pod network status %v %v, want the runtime's IPs", st.GetStatus().GetNetwork(), err)
	}
	sb, _ := f.r.sandboxes.Get(pod)
	if sb.Driver != "cri" {
		t.Errorf("record's driver %q, want cri", sb.Driver)
	}

	rd.readyErr = errors.New("remote /run/x.sock: connection refused")
	resp, err := f.r.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var rtReady, fwdReady *runtime.RuntimeCondition
	for _, c := range resp.Status.Conditions {
		switch c.Type {
		case runtime.RuntimeReady:
			rtReady = c
		case HandlerReadyCondition("fwd"):
			fwdReady = c
		}
	}
	if rtReady == nil || !rtReady.Status {
		t.Errorf("RuntimeReady %v: a remote that is down must not make the node's runtime not ready", rtReady)
	}
	if fwdReady == nil || fwdReady.Status || fwdReady.Message != "remote /run/x.sock: connection refused" {
		t.Errorf("condition %s: %v, want false with the remote's error", HandlerReadyCondition("fwd"), fwdReady)
	}

	// The handler leaves the configuration: its pods still reach its driver.
	delete(f.cfg.Handlers, "fwd")
	f.addDriver(t, "cri", rd)
	if rt := f.r.runtimeOf(sb); rt != rd.rts["fwd"] {
		t.Errorf("runtimeOf a removed handler's pod: %T, want the cri driver's runtime", rt)
	}
	if _, err := f.r.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if f.cni.dels != 0 {
		t.Errorf("crimux ran %d CNI DELs for a pod whose runtime owns its network", f.cni.dels)
	}
	// A record older than Metadata.Driver goes to the default driver.
	old := &sandbox.Sandbox{Metadata: sandbox.Metadata{ID: "old", Handler: "gone"}}
	if rt := f.r.runtimeOf(old); rt != f.drv.Runtime("gone") {
		t.Errorf("runtimeOf a record with no driver: %T, want the default driver's", rt)
	}
}
