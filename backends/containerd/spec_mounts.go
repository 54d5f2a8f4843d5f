package containerd

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// containerMounts are a container's mounts: the pod's etc files and shm,
// then the config's own (image volumes, resolved host paths), then its own
// cgroup read-only (a privileged container's is made writable by
// oci.WithPrivileged), as containerd's CRI mounts it. A mount the config
// gives for a destination replaces the pod's.
func containerMounts(in containerSpecInput) ([]specs.Mount, error) {
	cfg := in.Config
	own := map[string]bool{}
	for _, m := range cfg.Mounts {
		own[filepath.Clean(m.ContainerPath)] = true
	}
	var mounts []specs.Mount
	mode := "rw"
	if cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs() {
		mode = "ro"
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		if dst := "/etc/" + f; !own[dst] && slices.Contains(in.EtcFiles, f) {
			mounts = append(mounts, specs.Mount{Source: filepath.Join(in.Sandbox.Dir, f), Destination: dst, Type: "bind", Options: []string{"rbind", "rprivate", mode}})
		}
	}
	if !own["/dev/shm"] && in.ShmDir != "" {
		mounts = append(mounts, specs.Mount{Source: in.ShmDir, Destination: "/dev/shm", Type: "bind", Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}})
	}
	for i, m := range cfg.Mounts {
		if src, ok := in.ImageVols[i]; ok {
			mounts = append(mounts, specs.Mount{Source: src, Destination: m.ContainerPath, Type: "bind", Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			continue
		}
		sm, err := hostPathMount(in, m, in.HostPaths[i])
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, sm)
	}
	if !own["/sys/fs/cgroup"] {
		mounts = append(mounts, specs.Mount{Source: "cgroup", Destination: "/sys/fs/cgroup", Type: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
	}
	return mounts, nil
}

// hostPathMount is a bind mount of a host path (src: resolved on the node).
func hostPathMount(in containerSpecInput, m *runtime.Mount, src string) (specs.Mount, error) {
	if src == "" || m.ContainerPath == "" {
		return specs.Mount{}, fmt.Errorf("%w: mount needs host_path and container_path: %v", backends.ErrInvalid, m)
	}
	mode := "rw"
	if m.Readonly {
		mode = "ro"
	}
	opts := []string{"rbind", propagation(m.Propagation), mode}
	if m.RecursiveReadOnly {
		if err := checkRRO(m, in.RRO, in.Handler); err != nil {
			return specs.Mount{}, err
		}
		if !in.Policy.rroNative {
			opts = append(opts, "rro")
		}
	}
	sm := specs.Mount{Source: src, Destination: m.ContainerPath, Type: "bind", Options: opts}
	if len(m.UidMappings) > 0 || len(m.GidMappings) > 0 {
		// An idmapped bind mount (KEP-127 volumes in a pod user namespace).
		if _, _, ok := podIDMaps(in.Sandbox); !ok {
			return specs.Mount{}, fmt.Errorf("%w: mount %s has id mappings but the pod has no user namespace of its own", backends.ErrInvalid, m.ContainerPath)
		}
		sm.UIDMappings, sm.GIDMappings = idMaps(m.UidMappings), idMaps(m.GidMappings)
	}
	return sm, nil
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

// checkRRO validates a recursive read-only mount: the runtime must support it
// (runc's "rro" option, kernel mount_setattr), and it must be read-only and private.
func checkRRO(m *runtime.Mount, supported bool, handler string) error {
	if !supported {
		return fmt.Errorf("%w: handler %q does not support recursive read-only mounts (%s)", backends.ErrInvalid, handler, m.ContainerPath)
	}
	if !m.Readonly {
		return fmt.Errorf("%w: recursive read-only mount %s needs readonly: true", backends.ErrInvalid, m.ContainerPath)
	}
	if m.Propagation != runtime.MountPropagation_PROPAGATION_PRIVATE {
		return fmt.Errorf("%w: recursive read-only mount %s needs private propagation, not %s", backends.ErrInvalid, m.ContainerPath, m.Propagation)
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
