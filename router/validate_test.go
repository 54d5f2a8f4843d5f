package router

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func goodPod() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web-0", Namespace: "default", Uid: "0b6e2a4c-9d1e-4c41-8f4b-1d2c3e4f5a6b"},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/default_web-0_0b6e2a4c",
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10", "fd00::a"}, Searches: []string{"default.svc.cluster.local", "cluster.local."}, Options: []string{"ndots:5", "edns0"}},
		PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
		Labels:       map[string]string{"app": "web", "io.kubernetes.pod.name": "web-0"},
		Annotations:  map[string]string{"kubernetes.io/config.seen": "2026-11-30T00:00:00Z"},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/burstable/pod0b6e2a4c",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.conf.eth0/1.forwarding": "1"},
		},
	}
}

func goodContainer() *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata:   &runtime.ContainerMetadata{Name: "web"},
		Image:      &runtime.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:    []string{"sh", "-c", "echo hi\nexit 0"},
		WorkingDir: "/srv",
		Envs:       []*runtime.KeyValue{{Key: "A", Value: []byte("b=c")}},
		Mounts: []*runtime.Mount{
			{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/x/volumes/data"},
			{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: "crimux.test/x:v1"}, ImageSubPath: "bin"},
		},
		Devices: []*runtime.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rwm"}},
		LogPath: "web/0.log",
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{CpuShares: 2, CpusetCpus: "0-1", Unified: map[string]string{"memory.high": "max"},
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
			SecurityContext: &runtime.LinuxContainerSecurityContext{
				Capabilities:   &runtime.Capability{AddCapabilities: []string{"NET_ADMIN", "CAP_SYS_TIME"}, DropCapabilities: []string{"ALL"}},
				MaskedPaths:    []string{"/proc/kcore"},
				Seccomp:        &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/a.json"},
				Apparmor:       &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "k8s-apparmor-example"},
				SelinuxOptions: &runtime.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"},
			},
		},
	}
}

func TestValidateSandboxConfig(t *testing.T) {
	if err := validateSandboxConfig(goodPod()); err != nil {
		t.Fatalf("a kubelet-like config is refused: %v", err)
	}
	// setHostnameAsFQDN in a cluster without a DNS domain: the kubelet
	// sends the FQDN with its root dot (the node e2e suite does this).
	fqdn := goodPod()
	fqdn.Hostname = "hostfqdn-87468.t.hostfqdn-8905.svc."
	if err := validateSandboxConfig(fqdn); err != nil {
		t.Errorf("an absolute FQDN hostname is refused: %v", err)
	}
	for _, tc := range []struct {
		desc  string
		field string
		mod   func(*runtime.PodSandboxConfig)
	}{
		{"newline in hostname adds hosts lines", "hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "evil\n10.0.0.1 kubernetes" }},
		{"hostname too long", "hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = strings.Repeat("a", 65) }},
		{"hostname of dots", "hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "a.." }},
		{"hostname that is only the root", "hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "." }},
		{"dns server with a newline", "dns_config.servers[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Servers[0] = "8.8.8.8\nnameserver 6.6.6.6" }},
		{"dns server that is a name", "dns_config.servers[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Servers[1] = "dns.example" }},
		{"search with a space", "dns_config.searches[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[0] = "a.com b.com" }},
		{"option with a newline", "dns_config.options[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Options[1] = "edns0\nnameserver 1.1.1.1" }},
		{"sysctl name climbing", `linux.sysctls["kernel/../../x"]`, func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls["kernel/../../x"] = "1" }},
		{"sysctl value with a newline", `linux.sysctls["net.ipv4.ip_unprivileged_port_start"]`, func(c *runtime.PodSandboxConfig) {
			c.Linux.Sysctls["net.ipv4.ip_unprivileged_port_start"] = "0\n1"
		}},
		{"pod name injecting CNI args", "metadata.name", func(c *runtime.PodSandboxConfig) { c.Metadata.Name = "web;IP=10.88.0.5" }},
		{"namespace with a slash", "metadata.namespace", func(c *runtime.PodSandboxConfig) { c.Metadata.Namespace = "a/b" }},
		{"relative log dir", "log_directory", func(c *runtime.PodSandboxConfig) { c.LogDirectory = "logs" }},
		{"host ip not an ip", "port_mappings[0].host_ip", func(c *runtime.PodSandboxConfig) { c.PortMappings[0].HostIp = "localhost" }},
		{"annotation key with a newline", "annotations", func(c *runtime.PodSandboxConfig) { c.Annotations["a\nb"] = "x" }},
		{"cgroup parent climbing", "linux.cgroup_parent", func(c *runtime.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../system.slice" }},
		{"unified key with a slash", "linux.resources.unified", func(c *runtime.PodSandboxConfig) {
			c.Linux.Resources = &runtime.LinuxContainerResources{Unified: map[string]string{"../memory.max": "1"}}
		}},
		{"seccomp localhost ref relative", "linux.security_context.seccomp.localhost_ref", func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "a.json"}}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := goodPod()
			tc.mod(c)
			err := validateSandboxConfig(c)
			if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

func TestValidateContainerConfig(t *testing.T) {
	if err := validateContainerConfig(goodContainer()); err != nil {
		t.Fatalf("a kubelet-like config is refused: %v", err)
	}
	for _, tc := range []struct {
		desc  string
		field string
		mod   func(*runtime.ContainerConfig)
	}{
		{"log path climbing", "log_path", func(c *runtime.ContainerConfig) { c.LogPath = "../../../etc/cron.d/x" }},
		{"log path climbing after a dir", "log_path", func(c *runtime.ContainerConfig) { c.LogPath = "web/../../x.log" }},
		{"absolute log path", "log_path", func(c *runtime.ContainerConfig) { c.LogPath = "/etc/passwd" }},
		{"log path naming the log dir", "log_path", func(c *runtime.ContainerConfig) { c.LogPath = "." }},
		{"log path climbing back to the log dir", "log_path", func(c *runtime.ContainerConfig) { c.LogPath = "web/.." }},
		{"env key with =", "envs[0].key", func(c *runtime.ContainerConfig) { c.Envs[0].Key = "PATH=/evil:" }},
		{"env value with NUL", "envs[0].value", func(c *runtime.ContainerConfig) { c.Envs[0].Value = []byte("a\x00b") }},
		{"relative container path", "mounts[0].container_path", func(c *runtime.ContainerConfig) { c.Mounts[0].ContainerPath = "data" }},
		{"relative host path", "mounts[0].host_path", func(c *runtime.ContainerConfig) { c.Mounts[0].HostPath = "etc" }},
		{"image sub path climbing", "mounts[1].image_sub_path", func(c *runtime.ContainerConfig) { c.Mounts[1].ImageSubPath = "../../etc" }},
		{"absolute image sub path", "mounts[1].image_sub_path", func(c *runtime.ContainerConfig) { c.Mounts[1].ImageSubPath = "/etc" }},
		{"device permissions", "devices[0].permissions", func(c *runtime.ContainerConfig) { c.Devices[0].Permissions = "rwx" }},
		{"command with NUL", "command[1]", func(c *runtime.ContainerConfig) { c.Command[1] = "-c\x00" }},
		{"relative working dir", "working_dir", func(c *runtime.ContainerConfig) { c.WorkingDir = "srv" }},
		{"name with a newline", "metadata.name", func(c *runtime.ContainerConfig) { c.Metadata.Name = "web\nx" }},
		{"capability with a space", "capabilities.add_capabilities[0]", func(c *runtime.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities.AddCapabilities[0] = "NET ADMIN"
		}},
		{"unified key climbing", "linux.resources.unified", func(c *runtime.ContainerConfig) { c.Linux.Resources.Unified["../../cgroup.procs"] = "1" }},
		{"page size", "hugepage_limits[0].page_size", func(c *runtime.ContainerConfig) { c.Linux.Resources.HugepageLimits[0].PageSize = "2MB/../x" }},
		{"run_as_username with a colon", "run_as_username", func(c *runtime.ContainerConfig) { c.Linux.SecurityContext.RunAsUsername = "root:0" }},
		{"run_as_group alone", "run_as_group", func(c *runtime.ContainerConfig) {
			c.Linux.SecurityContext.RunAsGroup = &runtime.Int64Value{Value: 1}
		}},
		{"masked path relative", "masked_paths[0]", func(c *runtime.ContainerConfig) { c.Linux.SecurityContext.MaskedPaths[0] = "proc/kcore" }},
		{"selinux type with a colon", "selinux_options.type", func(c *runtime.ContainerConfig) { c.Linux.SecurityContext.SelinuxOptions.Type = "a:b" }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := goodContainer()
			tc.mod(c)
			err := validateContainerConfig(c)
			if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

// FuzzValidateSandboxConfig: a pod config that passes validation never
// adds lines to the files written from it, never injects CNI arguments, and
// its sysctls and cgroup parent stay where they belong.
func FuzzValidateSandboxConfig(f *testing.F) {
	p := goodPod()
	f.Add(p.Metadata.Name, p.Metadata.Namespace, p.Metadata.Uid, p.Hostname, p.LogDirectory, "10.96.0.10", "cluster.local", "ndots:5", "net.ipv4.ip_forward", "1", "a/b", "/kubepods")
	f.Add("x;IP=1.2.3.4", "ns", "u", "h\n1.1.1.1 k", "/l", "8.8.8.8\nnameserver 1.1.1.1", "a b", "x\ny", "kernel/../../x", "0\n1", "a\nb", "/../..")
	f.Add("a", "b", "c", "", "", "fe80::1%eth0", "a.", "rotate", "net/ipv4/conf/eth0.1/forwarding", "", "", "kubepods-pod1.slice")
	f.Fuzz(func(t *testing.T, name, ns, uid, hostname, logDir, server, search, option, sysctl, sysctlVal, annKey, cgroupParent string) {
		c := &runtime.PodSandboxConfig{
			Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: ns, Uid: uid},
			Hostname:     hostname,
			LogDirectory: logDir,
			DnsConfig:    &runtime.DNSConfig{Servers: []string{server}, Searches: []string{search}, Options: []string{option}},
			Annotations:  map[string]string{annKey: "v"},
			Linux:        &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{sysctl: sysctlVal}, CgroupParent: cgroupParent},
		}
		if validateSandboxConfig(c) != nil {
			return
		}
		dir := t.TempDir()
		if err := writeEtcFiles(dir, c, []string{"10.0.0.2"}, false); err != nil {
			t.Fatalf("valid config, but its files can't be written: %v", err)
		}
		lines := func(f string) []string {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		}
		if hostname != "" {
			if l := lines("hostname"); len(l) != 1 || l[0] != hostname {
				t.Fatalf("hostname file %q for %q", l, hostname)
			}
			if l := lines("hosts"); len(l) != 7 || l[6] != "10.0.0.2\t"+hostname {
				t.Fatalf("hosts file %q", l)
			}
		}
		if l := lines("resolv.conf"); len(l) != 3 || !strings.HasPrefix(l[0], "search ") || !strings.HasPrefix(l[1], "nameserver ") || !strings.HasPrefix(l[2], "options ") {
			t.Fatalf("resolv.conf %q", l)
		}
		for _, v := range []string{name, ns, uid} {
			if strings.ContainsAny(v, ";=, \t\n\x00/") {
				t.Fatalf("CNI argument value %q would inject arguments", v)
			}
		}
		if p := filepath.Join("/proc/sys", strings.ReplaceAll(sysctl, ".", "/")); !strings.HasPrefix(p, "/proc/sys/") {
			t.Fatalf("sysctl %q is written outside /proc/sys: %s", sysctl, p)
		}
		if p := filepath.Join("/sys/fs/cgroup/memory", cgroupParent); p != "/sys/fs/cgroup/memory" && !strings.HasPrefix(p, "/sys/fs/cgroup/memory/") {
			t.Fatalf("cgroup parent %q leaves the hierarchy: %s", cgroupParent, p)
		}
		if strings.ContainsAny(annKey, "\n\x00") {
			t.Fatalf("annotation key %q passed", annKey)
		}
	})
}

// FuzzValidateContainerConfig: a container config that passes validation
// keeps its log inside the pod's log dir, its environment as given, its
// image sub path inside the image and its cgroup files in its cgroup.
func FuzzValidateContainerConfig(f *testing.F) {
	f.Add("web", "web/0.log", "/srv", "A", "b=c", "/data", "/var/lib/x", "bin", "memory.high", "max", "sh")
	f.Add("a\nb", "../../x", "srv", "A=B", "\x00", "data", "rel", "../..", "../cgroup.procs", "1\n2", "a\x00b")
	f.Add("web", ".", "/srv", "A", "b", "/data", "/var/lib/x", "bin", "memory.high", "max", "sh") // the log dir itself (found by the fuzzer)
	f.Fuzz(func(t *testing.T, name, logPath, wd, envKey, envVal, ctrPath, hostPath, subPath, unifiedKey, unifiedVal, arg string) {
		c := &runtime.ContainerConfig{
			Metadata:   &runtime.ContainerMetadata{Name: name},
			Image:      &runtime.ImageSpec{Image: "busybox"},
			Command:    []string{arg},
			WorkingDir: wd,
			Envs:       []*runtime.KeyValue{{Key: envKey, Value: []byte(envVal)}},
			Mounts: []*runtime.Mount{{ContainerPath: ctrPath, HostPath: hostPath},
				{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: "x"}, ImageSubPath: subPath}},
			LogPath: logPath,
			Linux:   &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{Unified: map[string]string{unifiedKey: unifiedVal}}},
		}
		if validateContainerConfig(c) != nil {
			return
		}
		if logPath != "" {
			if p := filepath.Join("/var/log/pods/x", logPath); !strings.HasPrefix(p, "/var/log/pods/x/") {
				t.Fatalf("log path %q leaves the log dir: %s", logPath, p)
			}
		}
		if k, v, _ := strings.Cut(envKey+"="+envVal, "="); k != envKey || v != envVal {
			t.Fatalf("env %q=%q reads back as %q=%q", envKey, envVal, k, v)
		}
		if subPath != "" {
			if p := filepath.Join("/root", subPath); p != "/root" && !strings.HasPrefix(p, "/root/") {
				t.Fatalf("sub path %q leaves the image by its text", subPath)
			}
		}
		if p := filepath.Join("/sys/fs/cgroup/pod", unifiedKey); filepath.Dir(p) != "/sys/fs/cgroup/pod" || strings.ContainsAny(unifiedVal, "\n\x00") {
			t.Fatalf("unified %q=%q escapes the cgroup dir or adds lines", unifiedKey, unifiedVal)
		}
		for _, s := range []string{arg, wd, ctrPath, hostPath, envVal} {
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("NUL passed in %q", s)
			}
		}
		if !filepath.IsAbs(ctrPath) || !filepath.IsAbs(hostPath) {
			t.Fatalf("relative mount paths passed: %q %q", ctrPath, hostPath)
		}
	})
}
