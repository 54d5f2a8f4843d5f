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

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
)

// gvisorRuntime is a handler run by gVisor's containerd shim: the pause
// container creates one gVisor sandbox and every container of the pod joins it.
type gvisorRuntime struct {
	*Runtime
	// configPath is the shim config crimux writes from its own config.
	configPath string
	// root is runsc's --root as the shim uses it, without the namespace.
	root string
	bin  string
	// guards enforce containers' own memory limits (see gvisor_memory.go).
	guards memGuards
}

var _ backends.Runtime = (*gvisorRuntime)(nil)
var _ backends.PortForwarder = (*gvisorRuntime)(nil)
var _ backends.Recoverer = (*gvisorRuntime)(nil)
var _ backends.SandboxResizer = (*gvisorRuntime)(nil)

// newGvisorRuntime writes the shim's config file (binary, root, runsc flags)
// so operators set runsc flags in crimux's config only.
func newGvisorRuntime(r *Runtime) (*gvisorRuntime, error) {
	r.rroNative = true
	r.podLimitsOnSandbox = true
	g := &gvisorRuntime{Runtime: r}
	bin, err := exec.LookPath(r.h.RuntimePath)
	if err != nil {
		return nil, fmt.Errorf("handlers.%s.runtime_path: runsc %q: %w", r.name, r.h.RuntimePath, err)
	}
	g.bin = bin
	g.root = r.h.RuntimeRoot
	if g.root == "" {
		g.root = filepath.Join(r.d.opts.StateDir, "runsc", r.name)
	}
	dir := filepath.Join(r.d.opts.StateDir, "runsc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %q: %w", dir, err)
	}
	g.configPath = filepath.Join(dir, r.name+".toml")
	if err := os.WriteFile(g.configPath, []byte(shimConfig(bin, g.root, r.h)), 0o600); err != nil {
		return nil, fmt.Errorf("write runsc shim config: %w", err)
	}
	return g, nil
}

// shimConfig renders the TOML gVisor's shim reads through ConfigPath.
func shimConfig(bin, root string, h conf.Handler) string {
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

func (g *gvisorRuntime) runtimeOptions() (any, error) {
	return &runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: g.configPath}, nil
}

// Features implements backends.Runtime: what gVisor's sandbox supports. Its
// read-only bind mounts are always recursive, so recursive read-only mounts
// work (and non-recursive ones can't be had).
func (g *gvisorRuntime) Features() *runtime.RuntimeHandlerFeatures {
	return g.Runtime.Features()
}

// runscArgs are the global flags every runsc call for this handler needs.
func (g *gvisorRuntime) runscArgs() []string {
	args := []string{"--root", filepath.Join(g.root, g.d.opts.Namespace)}
	keys := make([]string, 0, len(g.h.RunscConfig))
	for k := range g.h.RunscConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--"+k+"="+g.h.RunscConfig[k])
	}
	return args
}

// PortForward implements backends.PortForwarder. In a gVisor pod the sockets
// live in gVisor's netstack, not in the host side of the pod's netns, so
// dialing there finds nothing: runsc's stream port-forward hands a unix
// socket to the sandbox's netstack, which connects to localhost:port inside.
func (g *gvisorRuntime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%w: port %d out of range", backends.ErrInvalid, port)
	}
	dir, err := os.MkdirTemp(filepath.Join(g.d.opts.StateDir, "runsc"), "pf-")
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
	args := append(g.runscArgs(), "port-forward", "--stream", sock, sandboxID, fmt.Sprint(port))
	cmd := exec.CommandContext(ctx, g.bin, args...)
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
func (g *gvisorRuntime) checkSandbox(sb backends.Sandbox) error {
	ns := nsOptions(sb)
	for what, mode := range map[string]runtime.NamespaceMode{"network (hostNetwork)": ns.Network, "PID (hostPID)": ns.Pid, "IPC (hostIPC)": ns.Ipc} {
		if mode == runtime.NamespaceMode_NODE {
			return fmt.Errorf("%w: handler %q: a gVisor sandbox can't share the node's %s namespace", backends.ErrUnsupported, g.name, what)
		}
	}
	for k := range sb.Config.GetLinux().GetSysctls() {
		if !runscSysctls[k] {
			return fmt.Errorf("%w: handler %q: runsc does not apply sysctl %q (it applies only fs.nr_open and net.ipv6.conf.all.disable_ipv6)", backends.ErrUnsupported, g.name, k)
		}
	}
	return nil
}

// RunSandbox implements backends.Runtime.
func (g *gvisorRuntime) RunSandbox(ctx context.Context, sb backends.Sandbox) (backends.TaskState, error) {
	if err := g.checkSandbox(sb); err != nil {
		return backends.TaskState{}, err
	}
	return g.Runtime.RunSandbox(ctx, sb)
}

// CreateContainer implements backends.Runtime.
func (g *gvisorRuntime) CreateContainer(ctx context.Context, c backends.Container) (backends.User, error) {
	sc := c.Config.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		return backends.User{}, fmt.Errorf("%w: handler %q: a gVisor container can't be privileged", backends.ErrUnsupported, g.name)
	}
	switch sc.GetNamespaceOptions().GetPid() {
	case runtime.NamespaceMode_NODE:
		return backends.User{}, fmt.Errorf("%w: handler %q: a gVisor container can't share the node's PID namespace", backends.ErrUnsupported, g.name)
	}
	return g.Runtime.CreateContainer(ctx, c)
}
