package containerd

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// sandboxSecurity: every capability for a privileged pod's pause, else its
// seccomp profile; the pod's run_as_user and run_as_group.
func sandboxSecurity(sc *runtime.LinuxSandboxSecurityContext) ([]oci.SpecOpts, error) {
	var opts []oci.SpecOpts
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
	return opts, nil
}

// containerSecurity: privileges (a privileged container needs a privileged
// pod), capabilities, masked and read-only paths, seccomp, AppArmor,
// devices, a read-only rootfs, no_new_privs and the user.
func containerSecurity(in containerSpecInput) ([]oci.SpecOpts, error) {
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	var opts []oci.SpecOpts
	if sc.GetPrivileged() {
		if !in.Sandbox.Config.GetLinux().GetSecurityContext().GetPrivileged() {
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
		_, _, ownUserns := podIDMaps(in.Sandbox)
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
	if in.AppArmor != "" {
		opts = append(opts, withAppArmor(in.AppArmor))
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
	return append(opts, userOpts(sc, in.Image.User)...), nil
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

func withAppArmor(profile string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.ApparmorProfile = profile
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
