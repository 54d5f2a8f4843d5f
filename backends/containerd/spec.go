package containerd

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// The spec builder: plain functions from plain inputs (the request, the
// image config, what the node and the runtime offer, host paths already
// resolved) to OCI spec options. It touches nothing on the host and runs no
// binary: CreateContainer and RunSandbox gather the inputs, the builder's
// parts are table-tested (spec_test.go). The parts are in
// spec_namespaces.go, spec_mounts.go, spec_security.go and spec_resources.go.

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

// nodeFacts are what the node offers, detected once by the driver.
type nodeFacts struct {
	cgroups      nodeCgroups
	oomFloor     int    // the lowest oom_score_adj crimux may set
	cgroupDriver string // cgroupfs or systemd
}

// clampOOM raises an oom_score_adj to the floor.
func (n nodeFacts) clampOOM(v int) int { return max(v, n.oomFloor) }

// cgroupsPath is a sandbox's or container's cgroup under the pod's parent.
func (n nodeFacts) cgroupsPath(parent, id string) string {
	if n.cgroupDriver == "systemd" {
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

// sandboxSpecInput is everything the pause container's spec is made from.
type sandboxSpecInput struct {
	Sandbox backends.Sandbox
	// Image is the pause image's config.
	Image ocispec.ImageConfig
	// Hostname is the pod's, or the node's when it names none.
	Hostname string
	Policy   specPolicy
	Node     nodeFacts
	// PodAnnotations are the annotation prefixes the handler passes on.
	PodAnnotations []string
	// MemoryVolumes are the pod's memory-backed emptyDir volumes by name
	// when Policy.memoryEmptyDirs.
	MemoryVolumes map[string]memoryVolume
}

// sandboxSpec builds the pause container's spec.
func sandboxSpec(in sandboxSpecInput) ([]oci.SpecOpts, error) {
	sb := in.Sandbox
	cfg := sb.Config
	process, err := imageProcess(in.Image)
	if err != nil {
		return nil, err
	}
	opts := append(process,
		oci.WithoutRunMount,
		withoutRlimits,
		oci.WithNoNewPrivileges,
		oci.WithRootFSReadonly(),
		oci.WithCgroup(in.Node.cgroupsPath(cfg.GetLinux().GetCgroupParent(), sb.ID)),
		withOOMScoreAdj(in.Node.clampOOM(sandboxOOMScoreAdj)),
		oci.WithCPUShares(2),
	)
	opts = append(opts, sandboxNamespaces(sb, in.Hostname)...)
	if sysctls := cfg.GetLinux().GetSysctls(); len(sysctls) > 0 {
		opts = append(opts, withSysctls(sysctls))
	}
	if res := podResources(cfg.GetLinux()); res != nil && in.Policy.podLimitsOnSandbox {
		opts = append(opts, withResources(res, in.Node.cgroups))
	}
	sec, err := sandboxSecurity(cfg.GetLinux().GetSecurityContext())
	if err != nil {
		return nil, err
	}
	opts = append(opts, sec...)
	ann := filterAnnotations(cfg.GetAnnotations(), in.PodAnnotations)
	if in.Policy.memoryEmptyDirs {
		for k, v := range sandboxMountHints(in.MemoryVolumes, ann) {
			ann[k] = v
		}
	}
	for k, v := range sandboxAnnotations(sb) {
		ann[k] = v
	}
	ann[annContainerType] = "sandbox"
	return append(opts, oci.WithAnnotations(ann)), nil
}

// imageProcess is the pause process from its image's config: entrypoint and
// cmd, environment, working dir and user (a numeric one set directly; a
// name looked up in the image's rootfs).
func imageProcess(ic ocispec.ImageConfig) ([]oci.SpecOpts, error) {
	args := append(append([]string{}, ic.Entrypoint...), ic.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: the sandbox image gives neither entrypoint nor cmd", backends.ErrInvalid)
	}
	cwd := ic.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	opts := []oci.SpecOpts{oci.WithProcessArgs(args...), oci.WithProcessCwd(cwd)}
	if len(ic.Env) > 0 {
		opts = append(opts, oci.WithEnv(ic.Env))
	}
	if u := ic.User; u != "" {
		uid, gid, ok := numericUser(u)
		if ok {
			opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
				s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: []uint32{gid}}
				return nil
			})
		} else {
			opts = append(opts, oci.WithUser(u))
		}
	}
	return opts, nil
}

// numericUser parses "uid" or "uid:gid" (gid = uid when missing).
func numericUser(u string) (uid, gid uint32, ok bool) {
	us, gs, hasGID := strings.Cut(u, ":")
	uv, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	gv := uv
	if hasGID {
		if gv, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return 0, 0, false
		}
	}
	return uint32(uv), uint32(gv), true
}

// containerSpecInput is everything a container's spec is made from.
type containerSpecInput struct {
	ID      string
	Sandbox backends.Sandbox
	Config  *runtime.ContainerConfig
	// Image is the image's config and ImageName the name it was created from.
	Image     ocispec.ImageConfig
	ImageName string
	// Hostname is the pod's, or the node's when it names none.
	Hostname string
	// PausePid is the sandbox's pause process, whose namespaces it joins.
	PausePid uint32
	// ShmDir is the pod's /dev/shm; "" when the pod uses the node's IPC.
	ShmDir string
	// EtcFiles are those of the pod's hosts, resolv.conf and hostname
	// (under Sandbox.Dir) that exist.
	EtcFiles []string
	// HostPaths are the config's host-path mounts, resolved on the node
	// (symlinks followed once), by the mount's index in Config.Mounts.
	HostPaths map[int]string
	// ImageVols are the image volumes' mounted roots, by mount index.
	ImageVols map[int]string
	// AppArmor is the profile to run it under ("" for none).
	AppArmor string
	// RRO: the handler supports recursive read-only mounts.
	RRO    bool
	Policy specPolicy
	Node   nodeFacts
	// ContainerAnnotations are the annotation prefixes the handler passes on.
	ContainerAnnotations []string
	// MemoryVolumes are the pod's memory-backed emptyDir volumes by name
	// when Policy.memoryEmptyDirs.
	MemoryVolumes map[string]memoryVolume
	// Handler names the handler in errors.
	Handler string
}

// containerSpec builds a container's spec.
func containerSpec(in containerSpecInput) ([]oci.SpecOpts, error) {
	opts, err := containerProcess(in)
	if err != nil {
		return nil, err
	}
	mounts, err := containerMounts(in)
	if err != nil {
		return nil, err
	}
	opts = append(opts, withMounts(mounts), withRootPropagation(in.Config.Mounts))
	ns, err := containerNamespaces(in)
	if err != nil {
		return nil, err
	}
	opts = append(opts, ns...)
	sec, err := containerSecurity(in)
	if err != nil {
		return nil, err
	}
	opts = append(opts, sec...)
	res, err := containerResources(in)
	if err != nil {
		return nil, err
	}
	opts = append(opts, res...)
	return append(opts, oci.WithAnnotations(containerAnnotations(in))), nil
}

// containerProcess is the process: args, environment, working dir, tty,
// cgroup. As containerd's CRI: no /run tmpfs over the image's /run, no
// rlimits of the default spec (the runtime's own are inherited), HOSTNAME in
// the environment.
func containerProcess(in containerSpecInput) ([]oci.SpecOpts, error) {
	cfg := in.Config
	args, err := processArgs(cfg, in.Image)
	if err != nil {
		return nil, err
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = in.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutRlimits,
		oci.WithProcessArgs(args...),
		oci.WithEnv(mergeEnv(append([]string{"HOSTNAME=" + in.Hostname}, in.Image.Env...), cfg.Envs)),
		oci.WithCgroup(in.Node.cgroupsPath(in.Sandbox.Config.GetLinux().GetCgroupParent(), in.ID)),
		oci.WithProcessCwd(cwd),
	}
	if cfg.Tty {
		opts = append(opts, oci.WithTTY)
	}
	return opts, nil
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

// mergeEnv is the image's environment overridden by the config's, a PATH
// when neither gives one.
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

// withoutRlimits drops the default spec's rlimits (RLIMIT_NOFILE 1024), so
// a container inherits the runtime's, as under containerd's CRI.
func withoutRlimits(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil {
		s.Process.Rlimits = nil
	}
	return nil
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

// containerAnnotations: the config's the handler passes on, then the CRI
// ones shims read to group a pod's containers.
func containerAnnotations(in containerSpecInput) map[string]string {
	ann := filterAnnotations(in.Config.GetAnnotations(), in.ContainerAnnotations)
	if in.Policy.memoryEmptyDirs {
		for k, v := range containerMountHints(in.MemoryVolumes, in.HostPaths, ann) {
			ann[k] = v
		}
	}
	for k, v := range sandboxAnnotations(in.Sandbox) {
		ann[k] = v
	}
	ann[annContainerType] = "container"
	ann[annContainerName] = in.Config.GetMetadata().GetName()
	ann[annImageName] = in.ImageName
	return ann
}
