package containerd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/crimux/crimux/backends"
)

// runscKind is a handler run by gVisor's containerd shim: the pause
// container creates one gVisor sandbox and every container of the pod joins it.
type runscKind struct {
	d    *Driver
	name string
	opts HandlerOptions
	// configPath is the shim config crimux writes from its own config.
	configPath string
	// root is runsc's --root as the shim uses it, without the namespace.
	root string
	bin  string
	// guards enforce containers' own memory limits (see runsc_memory.go).
	guards memGuards
}

var (
	_ handlerKind      = (*runscKind)(nil)
	_ portForwarder    = (*runscKind)(nil)
	_ containerWatcher = (*runscKind)(nil)
)

// newRunscKind writes the shim's config file (binary, root, runsc flags)
// so operators set runsc flags in crimux's config only.
func newRunscKind(d *Driver, name string, o HandlerOptions) (*runscKind, error) {
	k := &runscKind{d: d, name: name, opts: o}
	bin, err := exec.LookPath(o.RuntimePath)
	if err != nil {
		return nil, err
	}
	k.bin = bin
	k.root = o.RuntimeRoot
	if k.root == "" {
		k.root = filepath.Join(d.opts.StateDir, "runsc", name)
	}
	dir := filepath.Join(d.opts.StateDir, "runsc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %q: %w", dir, err)
	}
	k.configPath = filepath.Join(dir, name+".toml")
	if err := os.WriteFile(k.configPath, []byte(shimConfig(bin, k.root, o)), 0o600); err != nil {
		return nil, fmt.Errorf("write runsc shim config: %w", err)
	}
	return k, nil
}

func (k *runscKind) shimOptions() (any, error) {
	return &runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: k.configPath}, nil
}

// features: gVisor's read-only bind mounts are always recursive, so
// recursive read-only mounts work (and non-recursive ones can't be had); it
// has no idmapped rootfs, so no pod user namespaces.
func (k *runscKind) features(probedFeatures) *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}
}

// readsNetworkAtCreate: runsc copies the netns's addresses and routes into
// its netstack when it creates the sandbox.
func (k *runscKind) readsNetworkAtCreate() bool { return true }
func (k *runscKind) cgroupPerContainer() bool   { return false }

func (k *runscKind) policy() specPolicy {
	return specPolicy{rroNative: true, podLimitsOnSandbox: true, memoryEmptyDirs: true}
}

// shimConfig renders the TOML gVisor's shim reads through ConfigPath.
func shimConfig(bin, root string, h HandlerOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "binary_name = %q\nroot = %q\n", bin, root)
	if h.ShimLogLevel != "" {
		fmt.Fprintf(&b, "log_level = %q\n", h.ShimLogLevel)
	}
	b.WriteString("\n[runsc_config]\n")
	keys := make([]string, 0, len(h.RunscConfig))
	for k := range h.RunscConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%q = %q\n", k, h.RunscConfig[k])
	}
	return b.String()
}

// runscArgs are the global flags every runsc call for this handler needs.
func (k *runscKind) runscArgs() []string {
	args := []string{"--root", filepath.Join(k.root, k.d.opts.Namespace)}
	keys := make([]string, 0, len(k.opts.RunscConfig))
	for key := range k.opts.RunscConfig {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		args = append(args, "--"+key+"="+k.opts.RunscConfig[key])
	}
	return args
}

// portForward: in a gVisor pod the sockets
// live in gVisor's netstack, not in the host side of the pod's netns, so
// dialing there finds nothing: runsc's stream port-forward hands a unix
// socket to the sandbox's netstack, which connects to localhost:port inside.
func (k *runscKind) portForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%w: port %d out of range", backends.ErrInvalid, port)
	}
	dir, err := os.MkdirTemp(filepath.Join(k.d.opts.StateDir, "runsc"), "pf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("port forward socket: %w", err)
	}
	defer l.Close()
	args := append(k.runscArgs(), "port-forward", "--stream", sock, sandboxID, fmt.Sprint(port))
	cmd := exec.CommandContext(ctx, k.bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runsc port-forward to port %d in %s: %v: %s", port, sandboxID, err, strings.TrimSpace(string(out)))
	}
	conn, err := l.Accept()
	if err != nil {
		return fmt.Errorf("port forward accept: %w", err)
	}
	defer conn.Close()
	return backends.Splice(ctx, stream, conn)
}

// runscSysctls are the sysctls runsc applies from a pod spec; it ignores others.
var runscSysctls = map[string]bool{"net.ipv6.conf.all.disable_ipv6": true, "fs.nr_open": true}

// checkSandbox refuses what a gVisor sandbox can't do, rather than pretending.
func (k *runscKind) checkSandbox(sb backends.Sandbox) error {
	ns := nsOptions(sb)
	for what, mode := range map[string]runtime.NamespaceMode{"network (hostNetwork)": ns.Network, "PID (hostPID)": ns.Pid, "IPC (hostIPC)": ns.Ipc} {
		if mode == runtime.NamespaceMode_NODE {
			return fmt.Errorf("%w: handler %q: a gVisor sandbox can't share the node's %s namespace", backends.ErrUnsupported, k.name, what)
		}
	}
	for key := range sb.Config.GetLinux().GetSysctls() {
		if !runscSysctls[key] {
			return fmt.Errorf("%w: handler %q: runsc does not apply sysctl %q (it applies only fs.nr_open and net.ipv6.conf.all.disable_ipv6)", backends.ErrUnsupported, k.name, key)
		}
	}
	return nil
}

// checkContainer refuses what a container in a gVisor sandbox can't be.
func (k *runscKind) checkContainer(c backends.Container) error {
	sc := c.Config.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		return fmt.Errorf("%w: handler %q: a gVisor container can't be privileged", backends.ErrUnsupported, k.name)
	}
	if sc.GetNamespaceOptions().GetPid() == runtime.NamespaceMode_NODE {
		return fmt.Errorf("%w: handler %q: a gVisor container can't share the node's PID namespace", backends.ErrUnsupported, k.name)
	}
	return nil
}
