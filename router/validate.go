package router

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/internal/fsroot"
)

// Every string a CRI client sends is checked here before anything is made
// for it: strings that become file content (hosts, resolv.conf, hostname),
// kernel settings (sysctls, cgroup files), paths on the node, CNI arguments
// or parts of the OCI spec. A request that fails is InvalidArgument with
// every field at fault named, and nothing of it has been applied.

// fieldErrs collects what is wrong with a request, each naming its field.
type fieldErrs struct{ errs []error }

func (f *fieldErrs) add(field, format string, args ...any) {
	f.errs = append(f.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// err is nil, or InvalidArgument listing every problem.
func (f *fieldErrs) err(what string) error {
	if len(f.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", errInvalid, what, errors.Join(f.errs...))
}

var (
	// objectName is what a pod's name, namespace and uid and a container's
	// name may be: the kubelet sends DNS names and UUIDs. They reach CNI
	// arguments ("K=V;K=V"), annotations and records, so no separators,
	// spaces or control characters.
	objectName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	// hostnameRE is an RFC 1123 host name (labels of letters, digits, '-'
	// and, as some node names have, '_'), absolute or not: with
	// setHostnameAsFQDN and no cluster domain the kubelet sends the pod's
	// FQDN with its root dot.
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?)*\.?$`)
	// searchRE is a DNS search domain (a trailing dot allowed).
	searchRE = regexp.MustCompile(`^[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?)*\.?$`)
	// resolvOptionRE is a resolv.conf option: "ndots:5", "edns0", "single-request-reopen".
	resolvOptionRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(:[0-9A-Za-z_-]+)?$`)
	// sysctlRE is a sysctl name as Kubernetes validates it: '.' or '/' separated.
	sysctlRE = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)
	// unifiedKeyRE is a cgroup v2 interface file name ("memory.high").
	unifiedKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z0-9_.]+$`)
	// capabilityRE is a capability name, with or without CAP_.
	capabilityRE = regexp.MustCompile(`^[A-Za-z_]{1,64}$`)
	pageSizeRE   = regexp.MustCompile(`^[0-9]+[KMGT]?B$`)
	cpuListRE    = regexp.MustCompile(`^[0-9,\-]+$`)
)

// controlFree: no NUL, newline or other control character, valid UTF-8.
func controlFree(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkPath checks a path on the node or in a container: absolute, with
// no control characters (the kubelet decides which paths are allowed).
func (f *fieldErrs) checkPath(field, p string, required bool) {
	switch {
	case p == "":
		if required {
			f.add(field, "must not be empty")
		}
	case !filepath.IsAbs(p):
		f.add(field, "%q is not an absolute path", p)
	case !controlFree(p):
		f.add(field, "%q holds control characters", p)
	}
}

func (f *fieldErrs) checkName(field, s string) {
	if !objectName.MatchString(s) {
		f.add(field, "%q is not a name (letters, digits, '.', '_', '-', at most 253, starting with a letter or digit)", s)
	}
}

// checkKeys checks label or annotation keys: they go into records and, for
// annotations a handler passes on, into the OCI spec.
func (f *fieldErrs) checkKeys(field string, m map[string]string) {
	for _, k := range sortedKeys(m) {
		if k == "" || len(k) > 317 || !controlFree(k) || strings.ContainsAny(k, " \t") {
			f.add(fmt.Sprintf("%s[%q]", field, k), "is not a valid key (no spaces or control characters, at most 317)")
		}
	}
}

// checkSecurityProfile checks a seccomp or AppArmor profile reference.
func (f *fieldErrs) checkSecurityProfile(field string, p *runtime.SecurityProfile, pathRef bool) {
	if p == nil || p.ProfileType != runtime.SecurityProfile_Localhost {
		return
	}
	ref := p.LocalhostRef
	if pathRef {
		f.checkPath(field+".localhost_ref", ref, true)
		return
	}
	if ref == "" || !controlFree(ref) || strings.ContainsAny(ref, " \t") {
		f.add(field+".localhost_ref", "%q is not a profile name", ref)
	}
}

func (f *fieldErrs) checkSELinux(field string, o *runtime.SELinuxOption) {
	if o == nil {
		return
	}
	for _, kv := range [][2]string{{"user", o.User}, {"role", o.Role}, {"type", o.Type}} {
		if v := kv[1]; v != "" && (!controlFree(v) || strings.ContainsAny(v, ": \t")) {
			f.add(field+"."+kv[0], "%q is not an SELinux %s", v, kv[0])
		}
	}
	if o.Level != "" && (!controlFree(o.Level) || strings.ContainsAny(o.Level, " \t")) {
		f.add(field+".level", "%q is not an SELinux level", o.Level)
	}
}

// checkResources checks what becomes cgroup settings: runc and runsc write
// unified keys as file names in the container's cgroup.
func (f *fieldErrs) checkResources(field string, r *runtime.LinuxContainerResources) {
	if r == nil {
		return
	}
	for _, k := range sortedKeys(r.Unified) {
		v := r.Unified[k]
		if !unifiedKeyRE.MatchString(k) {
			f.add(fmt.Sprintf("%s.unified[%q]", field, k), "is not a cgroup interface file name")
		}
		if !controlFree(v) {
			f.add(fmt.Sprintf("%s.unified[%q]", field, k), "value %q holds control characters", v)
		}
	}
	for i, h := range r.HugepageLimits {
		if !pageSizeRE.MatchString(h.PageSize) {
			f.add(fmt.Sprintf("%s.hugepage_limits[%d].page_size", field, i), "%q is not a page size like 2MB", h.PageSize)
		}
	}
	for _, kv := range [][2]string{{"cpuset_cpus", r.CpusetCpus}, {"cpuset_mems", r.CpusetMems}} {
		if kv[1] != "" && !cpuListRE.MatchString(kv[1]) {
			f.add(field+"."+kv[0], "%q is not a CPU or node list like 0-3,6", kv[1])
		}
	}
	if r.CpuPeriod < 0 || r.CpuShares < 0 || r.MemoryLimitInBytes < 0 {
		f.add(field, "cpu_period, cpu_shares and memory_limit_in_bytes must not be negative")
	}
}

// validateSandboxConfig checks a RunPodSandbox request's config.
func validateSandboxConfig(cfg *runtime.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("%w: pod sandbox config is nil", errInvalid)
	}
	md := cfg.Metadata
	if md == nil {
		return fmt.Errorf("%w: pod sandbox config has no metadata", errInvalid)
	}
	var f fieldErrs
	if md.Name == "" || md.Namespace == "" || md.Uid == "" {
		f.add("metadata", "needs name, namespace and uid (got name=%q namespace=%q uid=%q)", md.Name, md.Namespace, md.Uid)
	} else {
		f.checkName("metadata.name", md.Name)
		f.checkName("metadata.namespace", md.Namespace)
		f.checkName("metadata.uid", md.Uid)
	}
	if h := cfg.Hostname; h != "" && (len(h) > 64 || !hostnameRE.MatchString(h)) {
		f.add("hostname", "%q is not a host name (RFC 1123 labels, at most 64 characters)", h)
	}
	f.checkPath("log_directory", cfg.LogDirectory, false)
	if d := cfg.DnsConfig; d != nil {
		for i, s := range d.Servers {
			if _, err := netip.ParseAddr(s); err != nil {
				f.add(fmt.Sprintf("dns_config.servers[%d]", i), "%q is not an IP address", s)
			}
		}
		for i, s := range d.Searches {
			if len(s) > 253 || !searchRE.MatchString(s) {
				f.add(fmt.Sprintf("dns_config.searches[%d]", i), "%q is not a domain name", s)
			}
		}
		for i, s := range d.Options {
			if !resolvOptionRE.MatchString(s) {
				f.add(fmt.Sprintf("dns_config.options[%d]", i), "%q is not a resolver option (name or name:value)", s)
			}
		}
	}
	for i, pm := range cfg.PortMappings {
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			f.add(fmt.Sprintf("port_mappings[%d]", i), "port mapping %d→%d is out of range", pm.HostPort, pm.ContainerPort)
		}
		if pm.HostIp != "" {
			if _, err := netip.ParseAddr(pm.HostIp); err != nil {
				f.add(fmt.Sprintf("port_mappings[%d].host_ip", i), "%q is not an IP address", pm.HostIp)
			}
		}
	}
	f.checkKeys("labels", cfg.Labels)
	f.checkKeys("annotations", cfg.Annotations)
	if l := cfg.Linux; l != nil {
		if p := l.CgroupParent; p != "" && (!controlFree(p) || strings.Contains("/"+p+"/", "/../")) {
			f.add("linux.cgroup_parent", "%q is not a cgroup path", p)
		}
		for _, k := range sortedKeys(l.Sysctls) {
			v := l.Sysctls[k]
			if len(k) > 253 || !sysctlRE.MatchString(k) {
				f.add(fmt.Sprintf("linux.sysctls[%q]", k), "is not a sysctl name")
			}
			if !controlFree(v) || len(v) > 4096 {
				f.add(fmt.Sprintf("linux.sysctls[%q]", k), "value %q holds control characters", v)
			}
		}
		f.checkResources("linux.resources", l.Resources)
		f.checkResources("linux.overhead", l.Overhead)
		if sc := l.SecurityContext; sc != nil {
			f.checkSecurityProfile("linux.security_context.seccomp", sc.Seccomp, true)
			if p := sc.SeccompProfilePath; p != "" && !controlFree(p) {
				f.add("linux.security_context.seccomp_profile_path", "%q holds control characters", p)
			}
			f.checkSELinux("linux.security_context.selinux_options", sc.SelinuxOptions)
			if err := validateUserns(sc.GetNamespaceOptions().GetUsernsOptions()); err != nil {
				f.errs = append(f.errs, err)
			}
		}
	}
	return f.err("pod sandbox config")
}

// validateContainerConfig checks a CreateContainer request's config.
func validateContainerConfig(cfg *runtime.ContainerConfig) error {
	if cfg == nil {
		return fmt.Errorf("%w: container config is nil", errInvalid)
	}
	if cfg.Metadata == nil || cfg.Metadata.Name == "" {
		return fmt.Errorf("%w: container config has no metadata name", errInvalid)
	}
	if cfg.Image == nil || cfg.Image.Image == "" {
		return fmt.Errorf("%w: container config has no image", errInvalid)
	}
	var f fieldErrs
	f.checkName("metadata.name", cfg.Metadata.Name)
	if !controlFree(cfg.Image.Image) || strings.ContainsAny(cfg.Image.Image, " \t") {
		f.add("image.image", "%q is not an image reference", cfg.Image.Image)
	}
	for i, a := range cfg.Command {
		if strings.IndexByte(a, 0) >= 0 {
			f.add(fmt.Sprintf("command[%d]", i), "holds a NUL byte")
		}
	}
	for i, a := range cfg.Args {
		if strings.IndexByte(a, 0) >= 0 {
			f.add(fmt.Sprintf("args[%d]", i), "holds a NUL byte")
		}
	}
	f.checkPath("working_dir", cfg.WorkingDir, false)
	for i, e := range cfg.Envs {
		if e.Key == "" || strings.ContainsAny(e.Key, "=\x00") {
			f.add(fmt.Sprintf("envs[%d].key", i), "%q is not an environment variable name (non-empty, no '=' or NUL)", e.Key)
		}
		if bytes.IndexByte(e.Value, 0) >= 0 {
			f.add(fmt.Sprintf("envs[%d].value", i), "holds a NUL byte")
		}
	}
	f.checkMounts(cfg.Mounts)
	f.checkDevices(cfg.Devices)
	if cfg.LogPath != "" {
		if err := fsroot.CheckLocal(cfg.LogPath); err != nil {
			f.add("log_path", "must stay inside the pod's log directory: %v", err)
		} else if filepath.Clean(cfg.LogPath) == "." {
			f.add("log_path", "%q names the pod's log directory itself, not a file in it", cfg.LogPath)
		}
	}
	f.checkKeys("labels", cfg.Labels)
	f.checkKeys("annotations", cfg.Annotations)
	if l := cfg.Linux; l != nil {
		f.checkResources("linux.resources", l.Resources)
		f.checkContainerSecurity(l.SecurityContext)
	}
	return f.err("container config")
}

// checkMounts checks a container's mounts: each is a host path or an image,
// never both, and an image's sub path must stay inside the image.
func (f *fieldErrs) checkMounts(mounts []*runtime.Mount) {
	for i, m := range mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		f.checkPath(field+".container_path", m.ContainerPath, true)
		if m.Image != nil && m.Image.Image != "" {
			if m.HostPath != "" {
				f.add(field, "has both host_path and image")
			}
			if m.ImageSubPath != "" {
				if err := fsroot.CheckLocal(m.ImageSubPath); err != nil {
					f.add(field+".image_sub_path", "%v", err)
				}
			}
			continue
		}
		f.checkPath(field+".host_path", m.HostPath, true)
	}
}

// checkDevices checks a container's devices, whose permissions go into the
// device cgroup as they are.
func (f *fieldErrs) checkDevices(devices []*runtime.Device) {
	for i, d := range devices {
		field := fmt.Sprintf("devices[%d]", i)
		f.checkPath(field+".container_path", d.ContainerPath, true)
		f.checkPath(field+".host_path", d.HostPath, true)
		if strings.Trim(d.Permissions, "rwm") != "" {
			f.add(field+".permissions", "%q is not a combination of r, w and m", d.Permissions)
		}
	}
}

// checkContainerSecurity checks a container's Linux security context, which
// becomes the OCI spec's user, capabilities, masked and read-only paths and
// LSM profiles.
func (f *fieldErrs) checkContainerSecurity(sc *runtime.LinuxContainerSecurityContext) {
	if sc == nil {
		return
	}
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		f.add("linux.security_context.run_as_group", "is set without run_as_user or run_as_username")
	}
	if u := sc.RunAsUsername; u != "" && (!controlFree(u) || strings.ContainsAny(u, ": \t/")) {
		f.add("linux.security_context.run_as_username", "%q is not a user name", u)
	}
	for i, p := range sc.MaskedPaths {
		f.checkPath(fmt.Sprintf("linux.security_context.masked_paths[%d]", i), p, true)
	}
	for i, p := range sc.ReadonlyPaths {
		f.checkPath(fmt.Sprintf("linux.security_context.readonly_paths[%d]", i), p, true)
	}
	if c := sc.Capabilities; c != nil {
		for _, l := range []struct {
			what string
			list []string
		}{{"add_capabilities", c.AddCapabilities}, {"drop_capabilities", c.DropCapabilities}, {"add_ambient_capabilities", c.AddAmbientCapabilities}} {
			for i, name := range l.list {
				if !capabilityRE.MatchString(name) {
					f.add(fmt.Sprintf("linux.security_context.capabilities.%s[%d]", l.what, i), "%q is not a capability name", name)
				}
			}
		}
	}
	f.checkSecurityProfile("linux.security_context.seccomp", sc.Seccomp, true)
	f.checkSecurityProfile("linux.security_context.apparmor", sc.Apparmor, false)
	for _, kv := range [][2]string{{"seccomp_profile_path", sc.SeccompProfilePath}, {"apparmor_profile", sc.ApparmorProfile}} {
		if kv[1] != "" && !controlFree(kv[1]) {
			f.add("linux.security_context."+kv[0], "%q holds control characters", kv[1])
		}
	}
	f.checkSELinux("linux.security_context.selinux_options", sc.SelinuxOptions)
}

// validateResources checks an UpdateContainerResources or
// UpdatePodSandboxResources request.
func validateResources(field string, r *runtime.LinuxContainerResources) error {
	var f fieldErrs
	f.checkResources(field, r)
	return f.err("resources")
}

// validateCommand checks an exec command.
func validateCommand(cmd []string) error {
	if len(cmd) == 0 {
		return fmt.Errorf("%w: exec needs a command", errInvalid)
	}
	var f fieldErrs
	for i, a := range cmd {
		if strings.IndexByte(a, 0) >= 0 {
			f.add(fmt.Sprintf("cmd[%d]", i), "holds a NUL byte")
		}
	}
	return f.err("exec")
}
