package containerd

import (
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

func nsOptions(sb backends.Sandbox) *runtime.NamespaceOption {
	if o := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtime.NamespaceOption{}
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

// sandboxNamespaces are the pause process's: the pod's netns and a UTS
// namespace with the pod's hostname, or the node's; the node's PID and IPC
// namespaces when asked; the pod's user namespace when it has one.
func sandboxNamespaces(sb backends.Sandbox, hostname string) []oci.SpecOpts {
	ns := nsOptions(sb)
	var opts []oci.SpecOpts
	if ns.Network == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, oci.WithHostname(hostname),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}))
	}
	if ns.Pid == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if ns.Ipc == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	return append(opts, usernsOpts(sb)...)
}

// containerNamespaces join the pause process's network, UTS and IPC
// namespaces (or the node's), its PID namespace when the container asks for
// the pod's, and the pod's user namespace.
func containerNamespaces(in containerSpecInput) ([]oci.SpecOpts, error) {
	sb, pid := in.Sandbox, in.PausePid
	ns := nsOptions(sb)
	var opts []oci.SpecOpts
	if ns.Network == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts,
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: fmt.Sprintf("/proc/%d/ns/uts", pid)}))
	}
	if ns.Ipc == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: fmt.Sprintf("/proc/%d/ns/ipc", pid)}))
	}
	opts = append(opts, usernsOpts(sb)...)
	switch in.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: fmt.Sprintf("/proc/%d/ns/pid", pid)}))
	case runtime.NamespaceMode_TARGET:
		return nil, fmt.Errorf("%w: pid namespace mode TARGET is not supported yet", backends.ErrInvalid)
	}
	return opts, nil
}
