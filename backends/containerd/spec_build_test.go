package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// The spec builder from plain inputs, part by part, as containerd tests its
// own (container_create_linux_test.go): the options are applied to the
// default spec, with a rootfs of the test's own for user lookups.

// rootfs is a root with /etc/passwd and /etc/group for user lookups.
func rootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\napp:x:1002:1003::/:/bin/sh\n",
		"group":  "root:x:0:\nwww-data:x:33:\nusers:x:100:app,www-data\napp:x:1003:\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// apply makes the default spec and applies opts to it.
func apply(t *testing.T, opts []oci.SpecOpts) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	c := &containers.Container{ID: "c1"}
	s, err := oci.GenerateSpec(ctx, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	s.Root.Path = rootfs(t)
	for _, o := range opts {
		if err := o(ctx, nil, c, s); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	return s
}

func testSandbox(mod func(*runtime.PodSandboxConfig)) backends.Sandbox {
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u1"},
		Hostname: "pod-host",
		Linux:    &runtime.LinuxPodSandboxConfig{CgroupParent: "/kubepods/podu1"},
	}
	if mod != nil {
		mod(cfg)
	}
	return backends.Sandbox{ID: "sb1", Config: cfg, NetNSPath: "/run/netns/sb1", Dir: "/run/crimux/pods/sb1"}
}

func testInput(mod func(*containerSpecInput)) containerSpecInput {
	in := containerSpecInput{
		ID:        "c1",
		Sandbox:   testSandbox(nil),
		Config:    &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "app"}, Command: []string{"sleep", "1"}, Linux: &runtime.LinuxContainerConfig{}},
		Image:     ocispec.ImageConfig{Env: []string{"FROM_IMAGE=1"}},
		ImageName: "busybox",
		Hostname:  "pod-host",
		PausePid:  42,
		ShmDir:    "/run/crimux/sandboxes/sb1/shm",
		EtcFiles:  []string{"hosts", "resolv.conf", "hostname"},
		Node:      nodeFacts{oomFloor: -1000, cgroupDriver: "cgroupfs"},
		Handler:   "runc",
	}
	if mod != nil {
		mod(&in)
	}
	return in
}

func mountAt(ms []specs.Mount, dst string) *specs.Mount {
	for i := range ms {
		if ms[i].Destination == dst {
			return &ms[i]
		}
	}
	return nil
}

func TestContainerMounts(t *testing.T) {
	hostMount := func(in *containerSpecInput, m *runtime.Mount) {
		in.Config.Mounts = append(in.Config.Mounts, m)
		if in.HostPaths == nil {
			in.HostPaths = map[int]string{}
		}
		in.HostPaths[len(in.Config.Mounts)-1] = "/resolved" + m.HostPath
	}
	for _, tc := range []struct {
		desc    string
		mod     func(*containerSpecInput)
		wantErr string
		check   func(*testing.T, []specs.Mount)
	}{
		{desc: "the pod's files, shm and a read-only cgroup", check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/etc/hosts"); m == nil || m.Source != "/run/crimux/pods/sb1/hosts" || !slices.Contains(m.Options, "rw") {
				t.Errorf("/etc/hosts: %+v", m)
			}
			if m := mountAt(ms, "/dev/shm"); m == nil || !slices.Contains(m.Options, "noexec") {
				t.Errorf("/dev/shm: %+v", m)
			}
			if m := mountAt(ms, "/sys/fs/cgroup"); m == nil || m.Type != "cgroup" || !slices.Contains(m.Options, "ro") {
				t.Errorf("cgroup: %+v", m)
			}
		}},
		{desc: "read-only rootfs makes the pod's files read-only", mod: func(in *containerSpecInput) {
			in.Config.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{ReadonlyRootfs: true}
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/etc/resolv.conf"); m == nil || !slices.Contains(m.Options, "ro") {
				t.Errorf("/etc/resolv.conf: %+v", m)
			}
		}},
		{desc: "missing pod files and no shm", mod: func(in *containerSpecInput) { in.EtcFiles, in.ShmDir = nil, "" }, check: func(t *testing.T, ms []specs.Mount) {
			if mountAt(ms, "/etc/hosts") != nil || mountAt(ms, "/dev/shm") != nil {
				t.Errorf("mounts %+v", ms)
			}
		}},
		{desc: "a config mount replaces the pod's", mod: func(in *containerSpecInput) {
			hostMount(in, &runtime.Mount{ContainerPath: "/etc/hosts", HostPath: "/h"})
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/etc/hosts"); m == nil || m.Source != "/resolved/h" || !slices.Contains(m.Options, "rprivate") {
				t.Errorf("/etc/hosts: %+v", m)
			}
		}},
		{desc: "propagation and read-only", mod: func(in *containerSpecInput) {
			hostMount(in, &runtime.Mount{ContainerPath: "/a", HostPath: "/a", Readonly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER})
			hostMount(in, &runtime.Mount{ContainerPath: "/b", HostPath: "/b", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL})
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/a"); m == nil || fmt.Sprint(m.Options) != "[rbind rslave ro]" {
				t.Errorf("/a: %+v", m)
			}
			if m := mountAt(ms, "/b"); m == nil || fmt.Sprint(m.Options) != "[rbind rshared rw]" {
				t.Errorf("/b: %+v", m)
			}
		}},
		{desc: "an image volume", mod: func(in *containerSpecInput) {
			in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: "x"}}}
			in.ImageVols = map[int]string{0: "/run/crimux/imagevols/c1/0"}
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/iv"); m == nil || m.Source != "/run/crimux/imagevols/c1/0" || !slices.Contains(m.Options, "ro") {
				t.Errorf("/iv: %+v", m)
			}
		}},
		{desc: "recursive read-only where runc has it", mod: func(in *containerSpecInput) {
			in.RRO = true
			hostMount(in, &runtime.Mount{ContainerPath: "/r", HostPath: "/r", Readonly: true, RecursiveReadOnly: true})
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/r"); m == nil || !slices.Contains(m.Options, "rro") {
				t.Errorf("/r: %+v", m)
			}
		}},
		{desc: "recursive read-only in gVisor needs no option", mod: func(in *containerSpecInput) {
			in.RRO, in.Policy.rroNative = true, true
			hostMount(in, &runtime.Mount{ContainerPath: "/r", HostPath: "/r", Readonly: true, RecursiveReadOnly: true})
		}, check: func(t *testing.T, ms []specs.Mount) {
			if m := mountAt(ms, "/r"); m == nil || slices.Contains(m.Options, "rro") {
				t.Errorf("/r: %+v", m)
			}
		}},
		{desc: "recursive read-only unsupported", mod: func(in *containerSpecInput) {
			hostMount(in, &runtime.Mount{ContainerPath: "/r", HostPath: "/r", Readonly: true, RecursiveReadOnly: true})
		}, wantErr: `handler "runc" does not support recursive read-only mounts`},
		{desc: "recursive read-only but writable", mod: func(in *containerSpecInput) {
			in.RRO = true
			hostMount(in, &runtime.Mount{ContainerPath: "/r", HostPath: "/r", RecursiveReadOnly: true})
		}, wantErr: "needs readonly: true"},
		{desc: "id mappings without a pod user namespace", mod: func(in *containerSpecInput) {
			hostMount(in, &runtime.Mount{ContainerPath: "/m", HostPath: "/m", UidMappings: []*runtime.IDMapping{{HostId: 1000, Length: 1}}})
		}, wantErr: "has id mappings but the pod has no user namespace"},
		{desc: "a host path that was not resolved", mod: func(in *containerSpecInput) {
			in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/x"}}
		}, wantErr: "mount needs host_path and container_path"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ms, err := containerMounts(testInput(tc.mod))
			if tc.wantErr != "" {
				if !errors.Is(err, backends.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want InvalidArgument with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, ms)
		})
	}
}

// withMounts replaces default mounts by destination and orders parents first.
func TestWithMounts(t *testing.T) {
	s := apply(t, []oci.SpecOpts{withMounts([]specs.Mount{
		{Destination: "/data/sub", Type: "bind", Source: "/s"},
		{Destination: "/dev/shm", Type: "bind", Source: "/shm"},
		{Destination: "/data", Type: "bind", Source: "/d"},
	})})
	var dsts []string
	shm := 0
	for _, m := range s.Mounts {
		dsts = append(dsts, m.Destination)
		if m.Destination == "/dev/shm" {
			shm++
		}
	}
	if shm != 1 || slices.Index(dsts, "/data") > slices.Index(dsts, "/data/sub") {
		t.Fatalf("mounts %v", dsts)
	}
}

func nsOf(s *oci.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		out[n.Type] = n.Path
	}
	return out
}

func TestContainerNamespaces(t *testing.T) {
	pidMode := func(m runtime.NamespaceMode) func(*containerSpecInput) {
		return func(in *containerSpecInput) {
			in.Config.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: m}}
		}
	}
	for _, tc := range []struct {
		desc    string
		mod     func(*containerSpecInput)
		want    map[specs.LinuxNamespaceType]string // "-": absent
		wantErr bool
	}{
		// POD is the zero mode: a config that names none shares the pod's
		// PID namespace, as under containerd's CRI (the kubelet names one).
		{desc: "joins the pause's network, UTS, IPC and PID namespaces", want: map[specs.LinuxNamespaceType]string{
			specs.NetworkNamespace: "/run/netns/sb1", specs.UTSNamespace: "/proc/42/ns/uts", specs.IPCNamespace: "/proc/42/ns/ipc", specs.PIDNamespace: "/proc/42/ns/pid"}},
		{desc: "a PID namespace of its own", mod: pidMode(runtime.NamespaceMode_CONTAINER), want: map[specs.LinuxNamespaceType]string{specs.PIDNamespace: ""}},
		{desc: "the node's PID namespace", mod: pidMode(runtime.NamespaceMode_NODE), want: map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "-"}},
		{desc: "TARGET is refused", mod: pidMode(runtime.NamespaceMode_TARGET), wantErr: true},
		{desc: "host network and IPC", mod: func(in *containerSpecInput) {
			in.Sandbox = testSandbox(func(c *runtime.PodSandboxConfig) {
				c.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE}}
			})
		}, want: map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "-", specs.UTSNamespace: "-", specs.IPCNamespace: "-"}},
		{desc: "a pod user namespace", mod: func(in *containerSpecInput) {
			in.Sandbox = testSandbox(func(c *runtime.PodSandboxConfig) {
				c.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{
					Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 100000, Length: 65536}}, Gids: []*runtime.IDMapping{{HostId: 100000, Length: 65536}}}}}
			})
			in.Sandbox.UsernsPath = "/run/crimux/userns/sb1"
		}, want: map[specs.LinuxNamespaceType]string{specs.UserNamespace: "/run/crimux/userns/sb1"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opts, err := containerNamespaces(testInput(tc.mod))
			if tc.wantErr {
				if !errors.Is(err, backends.ErrInvalid) {
					t.Fatalf("got %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := nsOf(apply(t, opts))
			for typ, want := range tc.want {
				p, ok := got[typ]
				if want == "-" && ok || want != "-" && (!ok || p != want) {
					t.Errorf("%s namespace: %q (present %v), want %q", typ, p, ok, want)
				}
			}
		})
	}
}

func TestContainerSecurity(t *testing.T) {
	sc := func(f func(*runtime.LinuxContainerSecurityContext)) func(*containerSpecInput) {
		return func(in *containerSpecInput) {
			s := &runtime.LinuxContainerSecurityContext{}
			f(s)
			in.Config.Linux.SecurityContext = s
		}
	}
	for _, tc := range []struct {
		desc    string
		mod     func(*containerSpecInput)
		wantErr string
		check   func(*testing.T, *oci.Spec)
	}{
		{desc: "defaults: default masks, no seccomp asked, new privileges allowed, root", check: func(t *testing.T, s *oci.Spec) {
			if len(s.Linux.MaskedPaths) == 0 || s.Process.NoNewPrivileges || s.Process.User.UID != 0 || s.Linux.Seccomp != nil {
				t.Errorf("masked %v nnp %v uid %d seccomp %v", s.Linux.MaskedPaths, s.Process.NoNewPrivileges, s.Process.User.UID, s.Linux.Seccomp)
			}
		}},
		{desc: "the kubelet's lists and RuntimeDefault seccomp", mod: sc(func(s *runtime.LinuxContainerSecurityContext) {
			s.MaskedPaths, s.ReadonlyPaths = []string{"/proc/kcore"}, []string{"/proc/sys"}
			s.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
			s.NoNewPrivs = true
		}), check: func(t *testing.T, s *oci.Spec) {
			if fmt.Sprint(s.Linux.MaskedPaths) != "[/proc/kcore]" || fmt.Sprint(s.Linux.ReadonlyPaths) != "[/proc/sys]" || s.Linux.Seccomp == nil || !s.Process.NoNewPrivileges {
				t.Errorf("masked %v ro %v seccomp %v nnp %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Seccomp != nil, s.Process.NoNewPrivileges)
			}
		}},
		{desc: "capabilities added and dropped", mod: sc(func(s *runtime.LinuxContainerSecurityContext) {
			s.Capabilities = &runtime.Capability{AddCapabilities: []string{"net_admin"}, DropCapabilities: []string{"CHOWN"}}
		}), check: func(t *testing.T, s *oci.Spec) {
			b := s.Process.Capabilities.Bounding
			if !slices.Contains(b, "CAP_NET_ADMIN") || slices.Contains(b, "CAP_CHOWN") {
				t.Errorf("bounding %v", b)
			}
		}},
		{desc: "drop ALL", mod: sc(func(s *runtime.LinuxContainerSecurityContext) {
			s.Capabilities = &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"KILL"}}
		}), check: func(t *testing.T, s *oci.Spec) {
			if fmt.Sprint(s.Process.Capabilities.Effective) != "[CAP_KILL]" {
				t.Errorf("effective %v", s.Process.Capabilities.Effective)
			}
		}},
		{desc: "a privileged container in an unprivileged pod", mod: sc(func(s *runtime.LinuxContainerSecurityContext) { s.Privileged = true }),
			wantErr: "a privileged container needs a privileged sandbox"},
		{desc: "AppArmor profile and read-only rootfs", mod: func(in *containerSpecInput) {
			in.AppArmor = "crimux-default"
			in.Config.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{ReadonlyRootfs: true}
		}, check: func(t *testing.T, s *oci.Spec) {
			if s.Process.ApparmorProfile != "crimux-default" || !s.Root.Readonly {
				t.Errorf("apparmor %q readonly %v", s.Process.ApparmorProfile, s.Root.Readonly)
			}
		}},
		{desc: "the image's user, groups from the image's /etc/group", mod: func(in *containerSpecInput) { in.Image.User = "app" }, check: func(t *testing.T, s *oci.Spec) {
			u := s.Process.User
			if u.UID != 1002 || u.GID != 1003 || fmt.Sprint(u.AdditionalGids) != "[100 1003]" {
				t.Errorf("user %+v", u)
			}
		}},
		// The primary group is one of the process's groups, as under
		// containerd's CRI; the image's memberships (users) are added.
		{desc: "run_as_user and group, supplemental groups sorted once", mod: sc(func(s *runtime.LinuxContainerSecurityContext) {
			s.RunAsUser, s.RunAsGroup = &runtime.Int64Value{Value: 33}, &runtime.Int64Value{Value: 7}
			s.SupplementalGroups = []int64{500, 100, 500}
		}), check: func(t *testing.T, s *oci.Spec) {
			u := s.Process.User
			if u.UID != 33 || u.GID != 7 || fmt.Sprint(u.AdditionalGids) != "[7 100 500]" {
				t.Errorf("user %+v", u)
			}
		}},
		{desc: "Strict supplemental groups policy ignores the image's", mod: sc(func(s *runtime.LinuxContainerSecurityContext) {
			s.RunAsUser = &runtime.Int64Value{Value: 1002}
			s.SupplementalGroupsPolicy = runtime.SupplementalGroupsPolicy_Strict
			s.SupplementalGroups = []int64{9}
		}), check: func(t *testing.T, s *oci.Spec) {
			if fmt.Sprint(s.Process.User.AdditionalGids) != "[9 1003]" { // the primary group and the config's
				t.Errorf("groups %v", s.Process.User.AdditionalGids)
			}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opts, err := containerSecurity(testInput(tc.mod))
			if tc.wantErr != "" {
				if !errors.Is(err, backends.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want InvalidArgument with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, apply(t, opts))
		})
	}
}

func TestContainerResourcesAndProcess(t *testing.T) {
	in := testInput(func(in *containerSpecInput) {
		in.Config.Linux.Resources = &runtime.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, OomScoreAdj: -999}
		in.Config.Envs = []*runtime.KeyValue{{Key: "FROM_IMAGE", Value: []byte("2")}}
		in.Config.WorkingDir = "/srv"
		in.Node.oomFloor = -500
		in.Node.cgroups.Swap = true
	})
	opts, err := containerResources(in)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := containerProcess(in)
	if err != nil {
		t.Fatal(err)
	}
	s := apply(t, append(proc, opts...))
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("oom_score_adj %d, want it clamped to -500", *s.Process.OOMScoreAdj)
	}
	if *s.Linux.Resources.Memory.Limit != 64<<20 || *s.Linux.Resources.Memory.Swap != 64<<20 || *s.Linux.Resources.CPU.Shares != 512 {
		t.Errorf("resources %+v %+v", s.Linux.Resources.Memory, s.Linux.Resources.CPU)
	}
	if s.Process.Cwd != "/srv" || s.Linux.CgroupsPath != "/kubepods/podu1/c1" || s.Process.Rlimits != nil || mountAt(s.Mounts, "/run") != nil {
		t.Errorf("cwd %q cgroup %q rlimits %v", s.Process.Cwd, s.Linux.CgroupsPath, s.Process.Rlimits)
	}
	env := strings.Join(s.Process.Env, " ")
	if !strings.Contains(env, "HOSTNAME=pod-host") || !strings.Contains(env, "FROM_IMAGE=2") || strings.Contains(env, "FROM_IMAGE=1") {
		t.Errorf("env %v", s.Process.Env)
	}
	// systemd cgroups; unified keys refused on cgroup v1.
	in.Node.cgroupDriver = "systemd"
	in.Sandbox.Config.Linux.CgroupParent = "kubepods-podu1.slice"
	proc, _ = containerProcess(in)
	if s := apply(t, proc); s.Linux.CgroupsPath != "kubepods-podu1.slice:crimux:c1" {
		t.Errorf("systemd cgroups path %q", s.Linux.CgroupsPath)
	}
	in.Config.Linux.Resources.Unified = map[string]string{"memory.high": "max"}
	if _, err := containerResources(in); !errors.Is(err, backends.ErrInvalid) {
		t.Errorf("unified keys on cgroup v1: %v", err)
	}
}

func TestSandboxSpec(t *testing.T) {
	pause := ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	for _, tc := range []struct {
		desc  string
		mod   func(*sandboxSpecInput)
		check func(*testing.T, *oci.Spec)
	}{
		{desc: "pause: its hostname, read-only root, the clamped -998, user 65535", check: func(t *testing.T, s *oci.Spec) {
			if s.Hostname != "pod-host" || !s.Root.Readonly || *s.Process.OOMScoreAdj != -998 || s.Process.User.UID != 65535 || s.Process.Args[0] != "/pause" {
				t.Errorf("hostname %q ro %v oom %d user %+v args %v", s.Hostname, s.Root.Readonly, *s.Process.OOMScoreAdj, s.Process.User, s.Process.Args)
			}
			if s.Annotations[annContainerType] != "sandbox" || s.Annotations[annSandboxID] != "sb1" || s.Annotations["x.io/a"] != "" {
				t.Errorf("annotations %v", s.Annotations)
			}
		}},
		{desc: "pod resources on a gVisor sandbox only", mod: func(in *sandboxSpecInput) {
			in.Policy.podLimitsOnSandbox = true
			in.Sandbox.Config.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 100 << 20}
		}, check: func(t *testing.T, s *oci.Spec) {
			if l := s.Linux.Resources.Memory; l == nil || l.Limit == nil || *l.Limit != 100<<20 {
				t.Errorf("memory %+v", l)
			}
		}},
		{desc: "annotations passed on by prefix; the floor clamps -998", mod: func(in *sandboxSpecInput) {
			in.PodAnnotations = []string{"x.io/"}
			in.Sandbox.Config.Annotations = map[string]string{"x.io/a": "1", "y.io/b": "2"}
			in.Node.oomFloor = 0
		}, check: func(t *testing.T, s *oci.Spec) {
			if s.Annotations["x.io/a"] != "1" || s.Annotations["y.io/b"] != "" || *s.Process.OOMScoreAdj != 0 {
				t.Errorf("annotations %v oom %d", s.Annotations, *s.Process.OOMScoreAdj)
			}
		}},
		{desc: "sysctls", mod: func(in *sandboxSpecInput) {
			in.Sandbox.Config.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, check: func(t *testing.T, s *oci.Spec) {
			if s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
				t.Errorf("sysctls %v", s.Linux.Sysctl)
			}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := sandboxSpecInput{Sandbox: testSandbox(nil), Image: pause, Hostname: "pod-host", Node: nodeFacts{oomFloor: -1000, cgroupDriver: "cgroupfs"}}
			if tc.mod != nil {
				tc.mod(&in)
			}
			opts, err := sandboxSpec(in)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, apply(t, opts))
		})
	}
	if _, err := sandboxSpec(sandboxSpecInput{Sandbox: testSandbox(nil)}); !errors.Is(err, backends.ErrInvalid) {
		t.Errorf("a pause image without a command: %v", err)
	}
}
