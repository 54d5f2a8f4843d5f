package router

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/sandbox"
)

func sandboxName(md *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.Name, md.Namespace, md.Uid, md.Attempt)
}

// validateUserns checks a pod's user namespace request: the node's (NODE,
// no mappings) or one of its own (POD) with one uid and one gid mapping that
// map container ID 0, as the kubelet sends them. Whether the pod's handler
// can give it one is checked once the handler is known.
func validateUserns(u *runtime.UserNamespace) error {
	if u == nil {
		return nil
	}
	switch u.Mode {
	case runtime.NamespaceMode_NODE:
		if len(u.Uids) > 0 || len(u.Gids) > 0 {
			return fmt.Errorf("%w: user namespace mode NODE takes no id mappings", errInvalid)
		}
		return nil
	case runtime.NamespaceMode_POD:
		for what, ms := range map[string][]*runtime.IDMapping{"uid": u.Uids, "gid": u.Gids} {
			if len(ms) != 1 {
				return fmt.Errorf("%w: a pod user namespace takes exactly one %s mapping (got %d)", errInvalid, what, len(ms))
			}
			if ms[0].ContainerId != 0 || ms[0].Length == 0 {
				return fmt.Errorf("%w: the pod user namespace's %s mapping must map container ID 0 (got container ID %d, length %d)", errInvalid, what, ms[0].ContainerId, ms[0].Length)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: user namespace mode %s is not supported (NODE or POD)", errInvalid, u.Mode)
}

// podUserNamespace is the pod's request for a user namespace of its own, or
// nil. POD is the zero mode: only a present UsernsOptions asks for one.
func podUserNamespace(cfg *runtime.PodSandboxConfig) *runtime.UserNamespace {
	u := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if u == nil || u.Mode != runtime.NamespaceMode_POD {
		return nil
	}
	return u
}

func sysIDMaps(in []*runtime.IDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(in))
	for _, m := range in {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerId), HostID: int(m.HostId), Size: int(m.Length)})
	}
	return out
}

func hostNetwork(cfg *runtime.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

// RunPodSandbox creates and starts a pod sandbox. A retry after a client
// timeout with the same config gets the sandbox the first call made.
func (r *Router) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if err := validateSandboxConfig(cfg); err != nil {
		return nil, err
	}
	handler, rt, err := r.resolveHandler(req.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	podUserns := podUserNamespace(cfg)
	if podUserns != nil && !rt.Features().GetUserNamespaces() {
		// Running it in the node's user namespace would pretend to honour it.
		return nil, fmt.Errorf("%w: handler %q can't give a pod a user namespace of its own (its runtime_handlers feature user_namespaces is false)", errInvalid, handler)
	}
	name := sandboxName(cfg.Metadata)
	id := newID()
	if err := r.sandboxNames.Reserve(name, id); err != nil {
		if sb := r.retriedSandbox(name, handler, cfg); sb != nil {
			return &runtime.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
		}
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	var undo cleanup
	ok := false
	defer func() {
		if !ok {
			undo.run()
			r.sandboxNames.Release(name, id)
		}
	}()

	md := sandbox.Metadata{ID: id, Name: name, Handler: handler, Driver: r.conf().Handlers[handler].Driver, Config: cfg, CreatedAt: time.Now().UnixNano()}
	dir := r.podDir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create pod dir: %w", err)
	}
	undo.add(func(context.Context) { _ = os.RemoveAll(dir) })

	if ownsNetwork(rt) {
		return r.runRemoteSandbox(ctx, rt, md, &undo, &ok)
	}
	hostNet := hostNetwork(cfg)
	if podUserns != nil {
		if err := r.createPodUserns(&md, podUserns, hostNet, &undo); err != nil {
			return nil, err
		}
	}
	if !hostNet {
		if err := r.createPodNetNS(&md, &undo); err != nil {
			return nil, err
		}
	}
	// CNI configures the netns while the runtime prepares (and, for runc,
	// starts) the sandbox: the two are independent until a runtime reads
	// the netns (Sandbox.WaitNetwork).
	net := r.startPodNetwork(md, hostNet)
	sb, runErr := r.runSandbox(ctx, rt, md, net.wait, &undo)
	ips, netErr := r.podNetworkResult(net, id, &undo)
	if netErr != nil {
		return nil, netErr
	}
	if runErr != nil {
		return nil, runErr
	}
	_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.IPs, s.NetworkReady = ips, !hostNet
		return s, nil
	})
	if err := writeEtcFiles(dir, cfg, ips, hostNet); err != nil {
		return nil, err
	}
	if err := r.ckpt.SaveSandbox(sb); err != nil {
		return nil, err
	}
	r.sandboxes.Add(id, sb)
	ok = true
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// runRemoteSandbox runs a pod whose runtime owns its network: no netns, no
// CNI, no sandbox image or /etc files of crimux's; its IPs are the
// runtime's.
func (r *Router) runRemoteSandbox(ctx context.Context, rt backends.Runtime, md sandbox.Metadata, undo *cleanup, ok *bool) (*runtime.RunPodSandboxResponse, error) {
	sb := sandbox.NewSandbox(md, sandbox.Status{State: runtime.PodSandboxState_SANDBOX_READY})
	ts, err := rt.RunSandbox(ctx, r.backendSandbox(sb))
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %q with handler %q: %w", md.Name, md.Handler, err)
	}
	fault.Point("run-sandbox/after-remote")
	undo.add(func(ctx context.Context) {
		_ = rt.StopSandbox(ctx, md.ID)
		if err := rt.RemoveSandbox(ctx, md.ID); err != nil {
			r.log.Error("roll back sandbox", "id", md.ID, "error", err)
		}
	})
	_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.IPs, s.Pid = ts.IPs, ts.Pid
		return s, nil
	})
	if err := r.ckpt.SaveSandbox(sb); err != nil {
		return nil, err
	}
	r.sandboxes.Add(md.ID, sb)
	*ok = true
	return &runtime.RunPodSandboxResponse{PodSandboxId: md.ID}, nil
}

// retriedSandbox is the pod a RunPodSandbox whose name is taken gets
// instead of an error: the name's holder when it is ready and was made with
// the same handler and config, as when the kubelet retries after a timeout
// while the first call went on. Otherwise nil.
func (r *Router) retriedSandbox(name, handler string, cfg *runtime.PodSandboxConfig) *sandbox.Sandbox {
	holder := r.sandboxNames.Holder(name)
	if sb, err := r.sandboxes.Get(holder); err == nil && sb.ID == holder &&
		sb.Handler == handler && proto.Equal(sb.Config, cfg) &&
		sb.Status().State == runtime.PodSandboxState_SANDBOX_READY {
		return sb
	}
	return nil
}

// createPodUserns makes the pod's own user namespace and, unless the pod
// uses the node's network, the netns it owns. The user namespace comes
// first so that it owns the netns; setupPodNetwork then uses that netns.
func (r *Router) createPodUserns(md *sandbox.Metadata, u *runtime.UserNamespace, hostNet bool, undo *cleanup) error {
	id := md.ID
	netnsDir := r.netnsDir()
	if hostNet {
		netnsDir = ""
	}
	up, np, err := sandbox.NewUserNS(r.usernsDir(), netnsDir, id, sysIDMaps(u.Uids), sysIDMaps(u.Gids))
	if err != nil {
		return fmt.Errorf("create the pod's user namespace: %w", err)
	}
	md.UsernsPath, md.NetNSPath = up, np
	undo.add(func(context.Context) {
		if err := sandbox.RemoveNetNS(up); err != nil {
			r.log.Error("roll back user namespace", "id", id, "error", err)
		}
	})
	return nil
}

// createPodNetNS makes the pod's netns, unless its user namespace made one.
func (r *Router) createPodNetNS(md *sandbox.Metadata, undo *cleanup) error {
	id := md.ID
	p := md.NetNSPath
	if p == "" {
		var err error
		if p, err = sandbox.NewNetNS(r.netnsDir(), id); err != nil {
			return err
		}
	}
	md.NetNSPath = p
	fault.Point("run-sandbox/after-netns")
	undo.add(func(context.Context) {
		if err := sandbox.RemoveNetNS(p); err != nil {
			r.log.Error("roll back netns", "id", id, "error", err)
		}
	})
	return nil
}

// podNetwork is a CNI ADD under way.
type podNetwork struct {
	done chan struct{}
	ips  []string
	err  error
	pod  cni.Pod
	set  bool // CNI ADD ran (and succeeded): a DEL is owed on rollback
}

// startPodNetwork runs the pod's CNI ADD in the background; its IPs are the
// pod's (never read back from the netns: gVisor's netstack removes them
// from the host side). A host-network pod has none.
func (r *Router) startPodNetwork(md sandbox.Metadata, hostNet bool) *podNetwork {
	n := &podNetwork{done: make(chan struct{})}
	if hostNet {
		close(n.done)
		return n
	}
	n.pod = r.cniPod(md)
	go func() {
		defer close(n.done)
		ips, err := r.cni.Setup(n.pod)
		if err != nil {
			n.err = fmt.Errorf("set up pod network: %w", err)
			return
		}
		n.ips, n.set = ips, true
		fault.Point("run-sandbox/after-cni")
	}()
	return n
}

// wait is Sandbox.WaitNetwork.
func (n *podNetwork) wait(ctx context.Context) error {
	select {
	case <-n.done:
		return n.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// result waits for the CNI ADD to end (even when the request was
// cancelled: what it made must be known to be undone) and returns the
// pod's IPs; a CNI DEL is added to undo.
func (r *Router) podNetworkResult(n *podNetwork, id string, undo *cleanup) ([]string, error) {
	<-n.done
	if n.set {
		pod := n.pod
		undo.add(func(context.Context) {
			if err := r.cni.Teardown(pod); err != nil {
				r.log.Error("roll back pod network", "id", id, "error", err)
			}
		})
	}
	return n.ips, n.err
}

// runSandbox starts the pod's sandbox (the pause container, or what the
// handler runs instead) from the handler's sandbox image, and returns the
// pod with its pid; recording it is left to the caller.
func (r *Router) runSandbox(ctx context.Context, rt backends.Runtime, md sandbox.Metadata, waitNetwork func(context.Context) error, undo *cleanup) (*sandbox.Sandbox, error) {
	id := md.ID
	img, err := r.images.SandboxImage(ctx, md.Handler)
	if err != nil {
		return nil, err
	}
	md.Image = img
	sb := sandbox.NewSandbox(md, sandbox.Status{State: runtime.PodSandboxState_SANDBOX_READY})
	bs := r.backendSandbox(sb)
	bs.WaitNetwork = waitNetwork
	ts, err := rt.RunSandbox(ctx, bs)
	if errors.Is(err, image.ErrNotFound) {
		// The sandbox image went away since it was looked up (removed
		// behind crimux's back): look again, once. The runtime made
		// nothing before it looked for the image.
		r.images.ForgetSandboxImage()
		if bs.Image, err = r.images.SandboxImage(ctx, md.Handler); err != nil {
			return nil, err
		}
		md.Image = bs.Image
		sb = sandbox.NewSandbox(md, sandbox.Status{State: runtime.PodSandboxState_SANDBOX_READY})
		ts, err = rt.RunSandbox(ctx, bs)
	}
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %q with handler %q: %w", md.Name, md.Handler, err)
	}
	undo.add(func(ctx context.Context) {
		if err := rt.RemoveSandbox(ctx, id); err != nil {
			r.log.Error("roll back sandbox", "id", id, "error", err)
		}
	})
	_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
		s.Pid = ts.Pid
		return s, nil
	})
	fault.Point("run-sandbox/after-pause")
	return sb, nil
}

// writeEtcFiles writes the pod's hostname, hosts and resolv.conf, which every
// container of the pod mounts.
func writeEtcFiles(dir string, cfg *runtime.PodSandboxConfig, ips []string, hostNet bool) error {
	hostname := cfg.Hostname
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read hostname: %w", err)
		}
		hostname = h // as containerd does: the node's name when the pod names none
	}
	if err := writeFileAtomic(filepath.Join(dir, "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pod hostname: %w", err)
	}
	var hosts []byte
	if hostNet {
		b, err := os.ReadFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read /etc/hosts: %w", err)
		}
		hosts = b
	} else {
		var sb strings.Builder
		sb.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
		for _, ip := range ips {
			fmt.Fprintf(&sb, "%s\t%s\n", ip, hostname)
		}
		hosts = []byte(sb.String())
	}
	if err := writeFileAtomic(filepath.Join(dir, "hosts"), hosts, 0o644); err != nil {
		return fmt.Errorf("write pod hosts file: %w", err)
	}
	var resolv []byte
	if d := cfg.GetDnsConfig(); d != nil && (len(d.Servers) > 0 || len(d.Searches) > 0 || len(d.Options) > 0) {
		var sb strings.Builder
		if len(d.Searches) > 0 {
			fmt.Fprintf(&sb, "search %s\n", strings.Join(d.Searches, " "))
		}
		for _, s := range d.Servers {
			fmt.Fprintf(&sb, "nameserver %s\n", s)
		}
		if len(d.Options) > 0 {
			fmt.Fprintf(&sb, "options %s\n", strings.Join(d.Options, " "))
		}
		resolv = []byte(sb.String())
	} else {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read /etc/resolv.conf: %w", err)
		}
		resolv = b
	}
	if err := writeFileAtomic(filepath.Join(dir, "resolv.conf"), resolv, 0o644); err != nil {
		return fmt.Errorf("write pod resolv.conf: %w", err)
	}
	return nil
}
