package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// CRI annotations shims and runtimes (gVisor's among them) read.
const (
	annContainerType    = "io.kubernetes.cri.container-type"
	annSandboxID        = "io.kubernetes.cri.sandbox-id"
	annSandboxName      = "io.kubernetes.cri.sandbox-name"
	annSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	annContainerName    = "io.kubernetes.cri.container-name"
	annImageName        = "io.kubernetes.cri.image-name"
	annSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	annSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	annSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// sandboxOOMScoreAdj is what the kubelet gives infrastructure containers.
const sandboxOOMScoreAdj = -998

func (r *Runtime) cgroupsPath(parent, id string) string {
	if r.d.opts.CgroupDriver == "systemd" {
		if parent == "" {
			parent = "system.slice"
		}
		return parent + ":crimux:" + id
	}
	if parent == "" {
		parent = "/crimux"
	}
	return filepath.Join(parent, id)
}

func filterAnnotations(in map[string]string, allowed []string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		for _, p := range allowed {
			if p == "*" || strings.HasPrefix(k, p) {
				out[k] = v
				break
			}
		}
	}
	return out
}

func sandboxAnnotations(sb backends.Sandbox) map[string]string {
	cfg := sb.Config
	a := map[string]string{
		annSandboxID:     sb.ID,
		annSandboxLogDir: cfg.GetLogDirectory(),
	}
	if md := cfg.GetMetadata(); md != nil {
		a[annSandboxName] = md.Name
		a[annSandboxNamespace] = md.Namespace
		a[annSandboxUID] = md.Uid
	}
	if res := cfg.GetLinux().GetResources(); res != nil {
		a[annSandboxCPUPeriod] = strconv.FormatInt(res.CpuPeriod, 10)
		a[annSandboxCPUQuota] = strconv.FormatInt(res.CpuQuota, 10)
		a[annSandboxCPUShares] = strconv.FormatInt(res.CpuShares, 10)
		a[annSandboxMemory] = strconv.FormatInt(res.MemoryLimitInBytes, 10)
	}
	return a
}

// podIDMaps are the pod's user namespace mappings when it has a user
// namespace of its own (mode POD; the router validated them).
func podIDMaps(sb backends.Sandbox) (uids, gids []specs.LinuxIDMapping, ok bool) {
	u := nsOptions(sb).GetUsernsOptions()
	if u == nil || u.Mode != runtime.NamespaceMode_POD { // POD is the zero mode
		return nil, nil, false
	}
	return idMaps(u.Uids), idMaps(u.Gids), true
}

func idMaps(in []*runtime.IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(in))
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerId, HostID: m.HostId, Size: m.Length})
	}
	return out
}

// usernsOpts put a container (pause included) in the pod's own user
// namespace, with its mappings, which runc checks against the namespace's.
// On the node's network a new sysfs can't be mounted from it (the node's
// user namespace owns that netns): the node's /sys is bound read-only instead.
func usernsOpts(sb backends.Sandbox) []oci.SpecOpts {
	uids, gids, ok := podIDMaps(sb)
	if !ok {
		return nil
	}
	opts := []oci.SpecOpts{
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: sb.UsernsPath}),
		oci.WithUserNamespace(uids, gids),
	}
	if nsOptions(sb).Network == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithoutMounts("/sys"), oci.WithMounts([]specs.Mount{
			{Source: "/sys", Destination: "/sys", Type: "bind", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}},
		}))
	}
	return opts
}

// snapshotOpts label a pod user namespace's snapshots so that the snapshotter
// id-maps them (overlayfs with idmapped layers) for the pod's mappings.
func snapshotOpts(sb backends.Sandbox) []snapshots.Opt {
	if uids, gids, ok := podIDMaps(sb); ok {
		return []snapshots.Opt{client.WithUserNSRemapperLabels(uids, gids)}
	}
	return nil
}

func nsOptions(sb backends.Sandbox) *runtime.NamespaceOption {
	if o := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtime.NamespaceOption{}
}

func hostname(sb backends.Sandbox) (string, error) {
	if h := sb.Config.GetHostname(); h != "" {
		return h, nil
	}
	return os.Hostname()
}

// sandboxSpec builds the pause container's spec.
func (r *Runtime) sandboxSpec(sb backends.Sandbox, img oci.Image) ([]oci.SpecOpts, error) {
	cfg := sb.Config
	nsOpts := nsOptions(sb)
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithoutRunMount,
		withoutRlimits,
		oci.WithNoNewPrivileges,
		oci.WithRootFSReadonly(),
		oci.WithCgroup(r.cgroupsPath(cfg.GetLinux().GetCgroupParent(), sb.ID)),
		withOOMScoreAdj(r.d.clampOOM(sandboxOOMScoreAdj)),
		oci.WithCPUShares(2),
	}
	if nsOpts.Network == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		h, err := hostname(sb)
		if err != nil {
			return nil, fmt.Errorf("read host's hostname: %w", err)
		}
		opts = append(opts, oci.WithHostname(h),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}))
	}
	if nsOpts.Pid == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if nsOpts.Ipc == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	if sysctls := cfg.GetLinux().GetSysctls(); len(sysctls) > 0 {
		opts = append(opts, withSysctls(sysctls))
	}
	if res := podResources(cfg.GetLinux()); res != nil && r.podLimitsOnSandbox {
		opts = append(opts, withResources(res, r.d.cgroups))
	}
	opts = append(opts, usernsOpts(sb)...)
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged)
	} else {
		sec, err := seccompOpt(sc.GetSeccomp())
		if err != nil {
			return nil, err
		}
		opts = append(opts, sec)
	}
	if u := sc.GetRunAsUser(); u != nil {
		opts = append(opts, oci.WithUIDGID(uint32(u.Value), uint32(sc.GetRunAsGroup().GetValue())))
	}
	ann := filterAnnotations(cfg.GetAnnotations(), r.h.PodAnnotations)
	for k, v := range sandboxAnnotations(sb) {
		ann[k] = v
	}
	ann[annContainerType] = "sandbox"
	opts = append(opts, oci.WithAnnotations(ann))
	return opts, nil
}

func withOOMScoreAdj(v int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &v
		return nil
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

func seccompOpt(p *runtime.SecurityProfile) (oci.SpecOpts, error) {
	if p == nil {
		// No profile is unconfined (the zero ProfileType is RuntimeDefault).
		return oci.WithSeccompUnconfined, nil
	}
	switch p.GetProfileType() {
	case runtime.SecurityProfile_RuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	case runtime.SecurityProfile_Localhost:
		ref := p.GetLocalhostRef()
		if ref == "" {
			return nil, fmt.Errorf("%w: seccomp Localhost profile without a localhost_ref", backends.ErrInvalid)
		}
		if _, err := os.Stat(ref); err != nil {
			return nil, fmt.Errorf("%w: seccomp profile %q: %v", backends.ErrInvalid, ref, err)
		}
		return seccomp.WithProfile(ref), nil
	default:
		return oci.WithSeccompUnconfined, nil
	}
}

// processArgs applies the CRI rule: command replaces the entrypoint (and
// drops the image's cmd), args replace the cmd.
func processArgs(cfg *runtime.ContainerConfig, ic ocispec.ImageConfig) ([]string, error) {
	entry, cmd := ic.Entrypoint, ic.Cmd
	if len(cfg.Command) > 0 {
		entry, cmd = cfg.Command, nil
	}
	if len(cfg.Args) > 0 {
		cmd = cfg.Args
	}
	args := append(append([]string{}, entry...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: no command: the container config and the image give neither entrypoint nor cmd", backends.ErrInvalid)
	}
	return args, nil
}

func mergeEnv(image []string, cfg []*runtime.KeyValue) []string {
	idx := map[string]int{}
	var out []string
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, e := range image {
		set(e)
	}
	if _, ok := idx["PATH"]; !ok {
		set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	for _, kv := range cfg {
		set(kv.Key + "=" + string(kv.Value))
	}
	return out
}

func propagation(p runtime.MountPropagation) string {
	switch p {
	case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		return "rslave"
	case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		return "rshared"
	}
	return "rprivate"
}

// containerSpec builds a container's spec; pausePid is the sandbox's pause process.
// apparmor is the AppArmor profile to run it under ("" for none).
func (r *Runtime) containerSpec(c backends.Container, ic ocispec.ImageConfig, pausePid uint32, shmDir string, imageVols map[int]string, apparmor string) ([]oci.SpecOpts, error) {
	cfg := c.Config
	sb := c.Sandbox
	nsOpts := nsOptions(sb)
	sc := cfg.GetLinux().GetSecurityContext()
	args, err := processArgs(cfg, ic)
	if err != nil {
		return nil, err
	}
	h, err := hostname(sb)
	if err != nil {
		return nil, fmt.Errorf("read host's hostname: %w", err)
	}
	opts := []oci.SpecOpts{
		// As containerd's CRI: no /run tmpfs over the image's /run, no
		// rlimits of the default spec (the runtime's own are inherited),
		// HOSTNAME in the environment.
		oci.WithoutRunMount,
		withoutRlimits,
		oci.WithProcessArgs(args...),
		oci.WithEnv(mergeEnv(append([]string{"HOSTNAME=" + h}, ic.Env...), cfg.Envs)),
		oci.WithCgroup(r.cgroupsPath(sb.Config.GetLinux().GetCgroupParent(), c.ID)),
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = ic.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	opts = append(opts, oci.WithProcessCwd(cwd))
	if cfg.Tty {
		opts = append(opts, oci.WithTTY)
	}

	// Mounts: the pod's etc files and shm, then the config's own.
	own := map[string]bool{}
	for _, m := range cfg.Mounts {
		own[filepath.Clean(m.ContainerPath)] = true
	}
	var mounts []specs.Mount
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		src := filepath.Join(sb.Dir, f)
		dst := "/etc/" + f
		if own[dst] {
			continue
		}
		if _, err := os.Stat(src); err != nil {
			continue
		}
		mode := "rw"
		if sc.GetReadonlyRootfs() {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "rprivate", mode}})
	}
	if !own["/dev/shm"] && shmDir != "" {
		mounts = append(mounts, specs.Mount{Source: shmDir, Destination: "/dev/shm", Type: "bind", Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}})
	}
	for i, m := range cfg.Mounts {
		if src, ok := imageVols[i]; ok {
			mounts = append(mounts, specs.Mount{Source: src, Destination: m.ContainerPath, Type: "bind", Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			continue
		}
		if m.HostPath == "" || m.ContainerPath == "" {
			return nil, fmt.Errorf("%w: mount needs host_path and container_path: %v", backends.ErrInvalid, m)
		}
		src := m.HostPath
		if _, err := os.Stat(src); os.IsNotExist(err) {
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("create mount source %q: %w", src, err)
			}
		}
		// Resolved once, here: the runtime mounts the resolved path.
		resolved, err := filepath.EvalSymlinks(src)
		if err != nil {
			return nil, fmt.Errorf("%w: mount %s: host path %q: %v", backends.ErrInvalid, m.ContainerPath, m.HostPath, err)
		}
		src = resolved
		mode := "rw"
		if m.Readonly {
			mode = "ro"
		}
		opts := []string{"rbind", propagation(m.Propagation), mode}
		if m.RecursiveReadOnly {
			if err := r.checkRRO(m); err != nil {
				return nil, err
			}
			if !r.rroNative {
				opts = append(opts, "rro")
			}
		}
		sm := specs.Mount{Source: src, Destination: m.ContainerPath, Type: "bind", Options: opts}
		if len(m.UidMappings) > 0 || len(m.GidMappings) > 0 {
			// An idmapped bind mount (KEP-127 volumes in a pod user namespace).
			if _, _, ok := podIDMaps(sb); !ok {
				return nil, fmt.Errorf("%w: mount %s has id mappings but the pod has no user namespace of its own", backends.ErrInvalid, m.ContainerPath)
			}
			sm.UIDMappings, sm.GIDMappings = idMaps(m.UidMappings), idMaps(m.GidMappings)
		}
		mounts = append(mounts, sm)
	}
	// The container's own cgroup, read-only (a privileged container's is
	// made writable below), as containerd's CRI mounts it.
	if !own["/sys/fs/cgroup"] {
		mounts = append(mounts, specs.Mount{Source: "cgroup", Destination: "/sys/fs/cgroup", Type: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
	}
	opts = append(opts, withMounts(mounts), withRootPropagation(cfg.Mounts))

	// Namespaces: join the pause container's.
	if nsOpts.Network == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts,
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: fmt.Sprintf("/proc/%d/ns/uts", pausePid)}))
	}
	if nsOpts.Ipc == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: fmt.Sprintf("/proc/%d/ns/ipc", pausePid)}))
	}
	opts = append(opts, usernsOpts(sb)...)
	switch cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: fmt.Sprintf("/proc/%d/ns/pid", pausePid)}))
	case runtime.NamespaceMode_TARGET:
		return nil, fmt.Errorf("%w: pid namespace mode TARGET is not supported yet", backends.ErrInvalid)
	}

	// Security.
	if sc.GetPrivileged() {
		if !sb.Config.GetLinux().GetSecurityContext().GetPrivileged() {
			return nil, fmt.Errorf("%w: a privileged container needs a privileged sandbox", backends.ErrInvalid)
		}
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	} else {
		if caps := sc.GetCapabilities(); caps != nil {
			opts = append(opts, capsOpt(caps))
		}
		// The kubelet always sends its lists, and empty ones for an
		// Unmasked proc mount, which the API allows only in a pod user
		// namespace; a client that sends none otherwise keeps the
		// default masks (containerd's CRI would mask nothing).
		_, _, ownUserns := podIDMaps(sb)
		if len(sc.GetMaskedPaths()) > 0 || ownUserns {
			opts = append(opts, oci.WithMaskedPaths(sc.GetMaskedPaths()))
		}
		if len(sc.GetReadonlyPaths()) > 0 || ownUserns {
			opts = append(opts, oci.WithReadonlyPaths(sc.GetReadonlyPaths()))
		}
		sec, err := seccompOpt(sc.GetSeccomp())
		if err != nil {
			return nil, err
		}
		opts = append(opts, sec)
	}
	if apparmor != "" {
		opts = append(opts, withAppArmor(apparmor))
	}
	for _, d := range cfg.Devices {
		opts = append(opts, oci.WithDevices(d.HostPath, d.ContainerPath, d.Permissions))
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	opts = append(opts, userOpts(sc, ic.User)...)

	// Resources.
	if res := cfg.GetLinux().GetResources(); res != nil {
		if err := checkUnified(res, r.d.cgroups); err != nil {
			return nil, err
		}
		opts = append(opts, withResources(res, r.d.cgroups), withOOMScoreAdj(r.d.clampOOM(int(res.OomScoreAdj))))
	}
	ann := filterAnnotations(cfg.GetAnnotations(), r.h.ContainerAnnotations)
	for k, v := range sandboxAnnotations(sb) {
		ann[k] = v
	}
	ann[annContainerType] = "container"
	ann[annContainerName] = cfg.GetMetadata().GetName()
	ann[annImageName] = c.Image
	opts = append(opts, oci.WithAnnotations(ann))
	return opts, nil
}

func withAppArmor(profile string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.ApparmorProfile = profile
		return nil
	}
}

// withoutRlimits drops the default spec's rlimits (RLIMIT_NOFILE 1024), so
// a container inherits the runtime's, as under containerd's CRI.
func withoutRlimits(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil {
		s.Process.Rlimits = nil
	}
	return nil
}

// withMounts adds the container's mounts to the spec: a default mount with
// the same destination is replaced (and all default mounts under /dev when
// /dev is given), and the given mounts are ordered so that a parent is
// mounted before what is mounted inside it.
func withMounts(ms []specs.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		given := map[string]bool{}
		for _, m := range ms {
			given[filepath.Clean(m.Destination)] = true
		}
		var kept []specs.Mount
		for _, m := range s.Mounts {
			dst := filepath.Clean(m.Destination)
			if given[dst] || (given["/dev"] && strings.HasPrefix(dst, "/dev/")) {
				continue
			}
			kept = append(kept, m)
		}
		sorted := slices.Clone(ms)
		sort.SliceStable(sorted, func(i, j int) bool { return depth(sorted[i].Destination) < depth(sorted[j].Destination) })
		s.Mounts = append(kept, sorted...)
		return nil
	}
}

// depth is how many components a path has.
func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// checkRRO validates a recursive read-only mount: the runtime must support it
// (runc's "rro" option, kernel mount_setattr), and it must be read-only and private.
func (r *Runtime) checkRRO(m *runtime.Mount) error {
	if !r.Features().RecursiveReadOnlyMounts {
		return fmt.Errorf("%w: handler %q does not support recursive read-only mounts (%s)", backends.ErrInvalid, r.name, m.ContainerPath)
	}
	if !m.Readonly {
		return fmt.Errorf("%w: recursive read-only mount %s needs readonly: true", backends.ErrInvalid, m.ContainerPath)
	}
	if m.Propagation != runtime.MountPropagation_PROPAGATION_PRIVATE {
		return fmt.Errorf("%w: recursive read-only mount %s needs private propagation, not %s", backends.ErrInvalid, m.ContainerPath, m.Propagation)
	}
	return nil
}

// withRootPropagation makes the rootfs shared or slave when a mount needs it.
func withRootPropagation(ms []*runtime.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, m := range ms {
			switch m.Propagation {
			case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
				s.Linux.RootfsPropagation = "rshared"
			case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
				if s.Linux.RootfsPropagation != "rshared" {
					s.Linux.RootfsPropagation = "rslave"
				}
			}
		}
		return nil
	}
}

func capsOpt(c *runtime.Capability) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, ct *containers.Container, s *oci.Spec) error {
		norm := func(in []string) []string {
			out := make([]string, 0, len(in))
			for _, c := range in {
				c = strings.ToUpper(c)
				if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
					c = "CAP_" + c
				}
				out = append(out, c)
			}
			return out
		}
		add, drop := norm(c.AddCapabilities), norm(c.DropCapabilities)
		for _, d := range drop {
			if d == "ALL" {
				if err := oci.WithCapabilities(nil)(ctx, cl, ct, s); err != nil {
					return err
				}
			}
		}
		for _, a := range add {
			if a == "ALL" {
				// All that crimux itself holds: a capability the runtime
				// lacks (CAP_SYS_RESOURCE in some sandboxes) can't be granted.
				if err := oci.WithAllCurrentCapabilities(ctx, cl, ct, s); err != nil {
					return err
				}
			}
		}
		var realAdd, realDrop []string
		for _, a := range add {
			if a != "ALL" {
				realAdd = append(realAdd, a)
			}
		}
		for _, d := range drop {
			if d != "ALL" {
				realDrop = append(realDrop, d)
			}
		}
		if err := oci.WithAddedCapabilities(realAdd)(ctx, cl, ct, s); err != nil {
			return err
		}
		return oci.WithDroppedCapabilities(realDrop)(ctx, cl, ct, s)
	}
}

func userOpts(sc *runtime.LinuxContainerSecurityContext, imageUser string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	userStr := ""
	switch {
	case sc.GetRunAsUser() != nil:
		uid := uint32(sc.GetRunAsUser().Value)
		opts = append(opts, oci.WithUserID(uid))
		userStr = strconv.FormatUint(uint64(uid), 10)
	case sc.GetRunAsUsername() != "":
		opts = append(opts, oci.WithUsername(sc.GetRunAsUsername()))
		userStr = sc.GetRunAsUsername()
	case imageUser != "":
		opts = append(opts, oci.WithUser(imageUser))
		userStr, _, _ = strings.Cut(imageUser, ":")
	default:
		userStr = "0"
	}
	if g := sc.GetRunAsGroup(); g != nil {
		gid := uint32(g.Value)
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	if sc.GetSupplementalGroupsPolicy() != runtime.SupplementalGroupsPolicy_Strict {
		opts = append(opts, oci.WithAdditionalGIDs(userStr))
	}
	groups := sc.GetSupplementalGroups()
	opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, g := range groups {
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
		}
		// Sorted and without duplicates, as Linux keeps them; runtimes that
		// don't sort (gVisor) then show the same order.
		gids := s.Process.User.AdditionalGids
		sort.Slice(gids, func(i, j int) bool { return gids[i] < gids[j] })
		s.Process.User.AdditionalGids = slices.Compact(gids)
		return nil
	})
	return opts
}

func withResources(res *runtime.LinuxContainerResources, node nodeCgroups) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		applyResources(s.Linux.Resources, res, node)
		return nil
	}
}

// podResources is what the whole pod may use, as the kubelet sizes its pod
// cgroup: the sum of its containers' resources plus the sandbox overhead.
// Only limits the pod has are set; nil when it has none.
func podResources(l *runtime.LinuxPodSandboxConfig) *runtime.LinuxContainerResources {
	res, over := l.GetResources(), l.GetOverhead()
	if res == nil {
		return nil
	}
	out := &runtime.LinuxContainerResources{CpuShares: res.CpuShares, CpusetCpus: res.CpusetCpus, CpusetMems: res.CpusetMems}
	if out.CpuShares > 0 {
		out.CpuShares += over.GetCpuShares()
	}
	if res.CpuQuota > 0 {
		out.CpuPeriod, out.CpuQuota = res.CpuPeriod, res.CpuQuota
		if over.GetCpuQuota() > 0 && over.GetCpuPeriod() == res.CpuPeriod {
			out.CpuQuota += over.GetCpuQuota()
		}
	}
	if res.MemoryLimitInBytes > 0 {
		out.MemoryLimitInBytes = res.MemoryLimitInBytes + max(over.GetMemoryLimitInBytes(), 0)
	}
	return out
}

// applyResources copies CRI resources into an OCI resources block, leaving
// out what the node's cgroups can't do (as containerd's CRI does): swap
// without swap accounting, hugepage limits without the hugetlb controller.
// Where swap can be limited and none is asked for, memory+swap equals the
// memory limit, so a container doesn't swap.
func applyResources(lr *specs.LinuxResources, res *runtime.LinuxContainerResources, node nodeCgroups) {
	if lr.CPU == nil {
		lr.CPU = &specs.LinuxCPU{}
	}
	if lr.Memory == nil {
		lr.Memory = &specs.LinuxMemory{}
	}
	if res.CpuPeriod != 0 {
		p := uint64(res.CpuPeriod)
		lr.CPU.Period = &p
	}
	if res.CpuQuota != 0 {
		q := res.CpuQuota
		lr.CPU.Quota = &q
	}
	if res.CpuShares != 0 {
		s := uint64(res.CpuShares)
		lr.CPU.Shares = &s
	}
	if res.CpusetCpus != "" {
		lr.CPU.Cpus = res.CpusetCpus
	}
	if res.CpusetMems != "" {
		lr.CPU.Mems = res.CpusetMems
	}
	if res.MemoryLimitInBytes != 0 {
		l := res.MemoryLimitInBytes
		lr.Memory.Limit = &l
		if res.MemorySwapLimitInBytes == 0 && node.Swap {
			lr.Memory.Swap = &l
		}
	}
	if res.MemorySwapLimitInBytes != 0 && node.Swap {
		l := res.MemorySwapLimitInBytes
		lr.Memory.Swap = &l
	}
	if node.Hugetlb {
		lr.HugepageLimits = nil
		for _, h := range res.HugepageLimits {
			lr.HugepageLimits = append(lr.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
		}
	}
	if len(res.Unified) > 0 {
		if lr.Unified == nil {
			lr.Unified = map[string]string{}
		}
		for k, v := range res.Unified {
			lr.Unified[k] = v
		}
	}
}
