package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/opencontainers/runtime-spec/specs-go"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

// specDifferences are the ways crimux's OCI spec for a container differs from
// the one containerd 2.4.2's CRI makes for the same request, each on purpose.
// The README's Security section lists the same, with the same reasons.
var specDifferences = map[string]string{
	"linux.maskedPaths":   "stronger: a request that names no masked paths keeps the default masks (the kubelet always sends its list); containerd's CRI masks nothing then",
	"linux.readonlyPaths": "stronger: likewise for read-only paths",
	"mounts /dev/shm":     "stronger: the pod's shm is bound nosuid,nodev,noexec as well as mounted so",
	"pause linux.sysctl": "stricter: containerd's CRI opens ports below 1024 and ICMP echo sockets to every uid in every pod " +
		"(enable_unprivileged_ports/icmp); crimux, like CRI-O, leaves the kernel defaults unless the pod asks with sysctls",
	"pause mounts (destinations)":   "the pause process reads no resolv.conf; crimux does not mount one into it",
	"pause mounts /etc/resolv.conf": "likewise",
	"pause mounts /dev/shm":         "the pause process gets a tmpfs of its own, not the pod's shm (it uses neither)",
	"pause process.env":             "the pause image's own PATH; the pause process execs nothing",
	"pause process.user":            "stronger: crimux's built-in pause image runs as 65535, not root",
}

// kubeletMaskedPaths and kubeletReadonlyPaths are what the kubelet sends for
// a container with the default proc mount.
var (
	kubeletMaskedPaths   = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	kubeletReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// The OCI spec crimux makes for an ordinary unprivileged container is no
// weaker than containerd's CRI's for the same CRI request: capabilities,
// masked and read-only paths, no_new_privileges, the seccomp default
// profile, rlimits, devices, the mounts of /proc, /sys, /dev and the like,
// and oom_score_adj. Both run on the same containerd binary.
func TestSpecMatchesContainerdCRI(t *testing.T) {
	needEnv(t)
	cc, err := env.StartContainerdCRI("s")
	if err != nil {
		t.Fatalf("start containerd with its CRI: %v", err)
	}
	t.Cleanup(cc.Stop)
	handler := env.Handler
	if handler == "" {
		handler = "runc"
	}
	pullBusybox(t)
	if _, err := cc.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.Busybox}, nil, nil); err != nil {
		t.Fatalf("containerd CRI pull: %v", err)
	}
	termLog := filepath.Join(env.Dir, "termination-log")
	if err := os.WriteFile(termLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name string
		pod  func(*runtime.PodSandboxConfig)
		ctr  func(*runtime.ContainerConfig)
	}{
		{name: "crictl-like (nothing set)"},
		{
			name: "kubelet-like (Burstable, RuntimeDefault seccomp)",
			pod: func(p *runtime.PodSandboxConfig) {
				p.Linux.CgroupParent = harness.CgroupPrefix + env.RunID + "-spec"
				p.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD},
					Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				}
			},
			ctr: func(c *runtime.ContainerConfig) {
				c.Mounts = []*runtime.Mount{{ContainerPath: "/dev/termination-log", HostPath: termLog}}
				c.Linux.Resources = &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20, OomScoreAdj: 969}
				c.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD},
					MaskedPaths:      kubeletMaskedPaths,
					ReadonlyPaths:    kubeletReadonlyPaths,
					Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				}
			},
		},
	}
	crimuxCtrd, err := client.New(env.CtrdSock, client.WithDefaultNamespace("crimux-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer crimuxCtrd.Close()
	criCtrd, err := client.New(cc.Socket, client.WithDefaultNamespace("k8s.io"))
	if err != nil {
		t.Fatal(err)
	}
	defer criCtrd.Close()

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			mk := func(rs internalapi.RuntimeService, cl *client.Client, who string) (pause, ctr *specs.Spec) {
				pod := podConfig(t, "spec")
				pod.Metadata.Name = "spec-" + who
				if v.pod != nil {
					v.pod(pod)
				}
				c := ctrConfig("app", "sleep", "3600")
				if v.ctr != nil {
					v.ctr(c)
				}
				podID, err := rs.RunPodSandbox(ctx(t), pod, handler)
				if err != nil {
					t.Fatalf("%s: RunPodSandbox: %v", who, err)
				}
				t.Cleanup(func() {
					cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					_ = rs.StopPodSandbox(cctx, podID)
					_ = rs.RemovePodSandbox(cctx, podID)
				})
				id, err := rs.CreateContainer(ctx(t), podID, c, pod)
				if err != nil {
					t.Fatalf("%s: CreateContainer: %v", who, err)
				}
				load := func(id string) *specs.Spec {
					cont, err := cl.LoadContainer(ctx(t), id)
					if err != nil {
						t.Fatalf("%s: load %s: %v", who, id, err)
					}
					s, err := cont.Spec(ctx(t))
					if err != nil {
						t.Fatalf("%s: spec of %s: %v", who, id, err)
					}
					return s
				}
				return load(podID), load(id)
			}
			minePause, mine := mk(env.Runtime, crimuxCtrd, "crimux")
			theirsPause, theirs := mk(cc.Runtime, criCtrd, "containerd")
			a, b := specFacts(mine), specFacts(theirs)
			for k, v := range specFacts(minePause) {
				a["pause "+k] = v
			}
			for k, v := range specFacts(theirsPause) {
				b["pause "+k] = v
			}
			var unexpected []string
			for _, k := range sortedFactKeys(a, b) {
				if a[k] == b[k] {
					continue
				}
				line := fmt.Sprintf("%s:\n      crimux:     %s\n      containerd: %s", k, a[k], b[k])
				if why, ok := specDifferences[k]; ok {
					t.Logf("known difference %s (%s)", line, why)
					continue
				}
				unexpected = append(unexpected, line)
			}
			if len(unexpected) > 0 {
				t.Errorf("crimux's spec differs from containerd CRI's:\n  %s", strings.Join(unexpected, "\n  "))
			}
		})
	}
}

func sortedFactKeys(ms ...map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	return out
}

// specFacts flattens the security-relevant parts of a spec into comparable
// strings, leaving out what differs by design between any two runtimes
// (IDs, paths of namespaces and mount sources, annotations, cgroup paths).
func specFacts(s *specs.Spec) map[string]string {
	f := map[string]string{}
	p := s.Process
	if p != nil {
		if c := p.Capabilities; c != nil {
			f["process.capabilities.bounding"] = js(sortedCopy(c.Bounding))
			f["process.capabilities.effective"] = js(sortedCopy(c.Effective))
			f["process.capabilities.permitted"] = js(sortedCopy(c.Permitted))
			f["process.capabilities.inheritable"] = js(sortedCopy(c.Inheritable))
			f["process.capabilities.ambient"] = js(sortedCopy(c.Ambient))
		}
		f["process.noNewPrivileges"] = js(p.NoNewPrivileges)
		rl := slices.Clone(p.Rlimits)
		sort.Slice(rl, func(i, j int) bool { return rl[i].Type < rl[j].Type })
		f["process.rlimits"] = js(rl)
		f["process.oomScoreAdj"] = js(p.OOMScoreAdj)
		f["process.user"] = js(p.User)
		f["process.apparmorProfile"] = p.ApparmorProfile
		f["process.selinuxLabel"] = p.SelinuxLabel
		f["process.cwd"] = p.Cwd
		f["process.terminal"] = js(p.Terminal)
		f["process.env"] = js(sortedCopy(p.Env))
		f["process.args"] = js(p.Args)
	}
	f["hostname"] = s.Hostname
	if s.Root != nil {
		f["root.readonly"] = js(s.Root.Readonly)
	}
	for _, m := range s.Mounts {
		opts := sortedCopy(m.Options)
		f["mounts "+m.Destination] = m.Type + " " + strings.Join(opts, ",")
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	f["mounts (destinations)"] = js(sortedCopy(dests))
	if l := s.Linux; l != nil {
		f["linux.maskedPaths"] = js(sortedCopy(l.MaskedPaths))
		f["linux.readonlyPaths"] = js(sortedCopy(l.ReadonlyPaths))
		f["linux.rootfsPropagation"] = l.RootfsPropagation
		f["linux.sysctl"] = js(l.Sysctl)
		var ns []string
		for _, n := range l.Namespaces {
			ns = append(ns, fmt.Sprintf("%s(joined=%t)", n.Type, n.Path != ""))
		}
		f["linux.namespaces"] = js(sortedCopy(ns))
		devs := slices.Clone(l.Devices)
		sort.Slice(devs, func(i, j int) bool { return devs[i].Path < devs[j].Path })
		f["linux.devices"] = js(devs)
		if r := l.Resources; r != nil {
			f["linux.resources.devices"] = js(r.Devices)
			f["linux.resources.cpu"] = js(r.CPU)
			f["linux.resources.memory"] = js(r.Memory)
			f["linux.resources.pids"] = js(r.Pids)
			f["linux.resources.hugepageLimits"] = js(r.HugepageLimits)
		}
		if sc := l.Seccomp; sc != nil {
			f["linux.seccomp.defaultAction"] = string(sc.DefaultAction)
			f["linux.seccomp.architectures"] = js(sc.Architectures)
			f["linux.seccomp.flags"] = js(sc.Flags)
			f["linux.seccomp.syscalls"] = js(sc.Syscalls)
		} else {
			f["linux.seccomp"] = "none"
		}
		f["linux.intelRdt"] = js(l.IntelRdt)
		f["linux.mountLabel"] = l.MountLabel
	}
	return f
}
