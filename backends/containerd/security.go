package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ctrdapparmor "github.com/containerd/containerd/v2/contrib/apparmor"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// defaultAppArmorProfile is the profile crimux loads (containerd's default
// template) and gives containers that ask for RuntimeDefault, or for
// nothing, where the node has AppArmor.
const defaultAppArmorProfile = "crimux-default"

// hostLSM is what the node's Linux security modules offer, detected once.
type hostLSM struct {
	// AppArmor: the kernel has AppArmor enabled (and crimux is not in a
	// container where it can't load profiles).
	AppArmor bool
	// SELinux: selinuxfs is mounted, so SELinux labels would mean something.
	SELinux bool
	// appArmorLoaded reports whether a profile is loaded; nil reads the kernel's list.
	appArmorLoaded func(name string) (bool, error)
}

func detectSELinux() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// appArmorRequest is the container's AppArmor request, from the field or
// the deprecated string ("runtime/default", "unconfined", "localhost/<name>").
func appArmorRequest(sc *runtime.LinuxContainerSecurityContext) (*runtime.SecurityProfile, error) {
	if p := sc.GetApparmor(); p != nil {
		return p, nil
	}
	switch s := sc.GetApparmorProfile(); {
	case s == "":
		return nil, nil
	case s == "runtime/default":
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, nil
	case s == "unconfined":
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, nil
	case strings.HasPrefix(s, "localhost/"):
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: strings.TrimPrefix(s, "localhost/")}, nil
	}
	return nil, fmt.Errorf("%w: apparmor_profile %q is not runtime/default, unconfined or localhost/<name>", backends.ErrInvalid, sc.GetApparmorProfile())
}

// appArmorProfile decides a container's AppArmor profile as containerd's
// CRI does: where the node has no AppArmor, any request but Unconfined is
// refused (never a silently unconfined container); where it has, no request
// and RuntimeDefault get crimux's default profile (none for a privileged
// container), Localhost a profile that must be loaded. It returns the
// profile name, "" for none.
func appArmorProfile(sc *runtime.LinuxContainerSecurityContext, privileged bool, lsm hostLSM) (string, error) {
	p, err := appArmorRequest(sc)
	if err != nil {
		return "", err
	}
	if !lsm.AppArmor {
		if p != nil && p.ProfileType != runtime.SecurityProfile_Unconfined {
			return "", fmt.Errorf("%w: apparmor profile %s %q: AppArmor is not enabled on this node", backends.ErrInvalid, p.ProfileType, p.LocalhostRef)
		}
		return "", nil
	}
	if p == nil {
		p = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	}
	if p.ProfileType != runtime.SecurityProfile_Localhost && p.LocalhostRef != "" {
		return "", fmt.Errorf("%w: apparmor localhost_ref %q is only for profile type Localhost", backends.ErrInvalid, p.LocalhostRef)
	}
	switch p.ProfileType {
	case runtime.SecurityProfile_Unconfined:
		return "", nil
	case runtime.SecurityProfile_RuntimeDefault:
		if privileged {
			return "", nil
		}
		return defaultAppArmorProfile, nil
	case runtime.SecurityProfile_Localhost:
		name := strings.TrimPrefix(p.LocalhostRef, "localhost/")
		loaded := lsm.appArmorLoaded
		if loaded == nil {
			loaded = appArmorLoaded
		}
		ok, err := loaded(name)
		if err != nil {
			return "", fmt.Errorf("apparmor profile %q: %w", name, err)
		}
		if !ok {
			return "", fmt.Errorf("%w: apparmor profile %q is not loaded on this node", backends.ErrInvalid, name)
		}
		return name, nil
	}
	return "", fmt.Errorf("%w: apparmor profile type %s", backends.ErrInvalid, p.ProfileType)
}

// loadDefaultAppArmor loads crimux's default AppArmor profile (containerd's
// default template, with apparmor_parser) unless it is loaded already.
func (d *Driver) loadDefaultAppArmor() error {
	d.aaMu.Lock()
	defer d.aaMu.Unlock()
	if d.aaLoaded {
		return nil
	}
	if err := ctrdapparmor.LoadDefaultProfile(defaultAppArmorProfile); err != nil {
		return fmt.Errorf("load AppArmor profile %s: %w", defaultAppArmorProfile, err)
	}
	d.aaLoaded = true
	return nil
}

// appArmorLoaded reads the kernel's list of loaded profiles.
func appArmorLoaded(name string) (bool, error) {
	f, err := os.Open("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, name+" (") {
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// checkSELinux refuses SELinux options crimux can't apply. Where the node
// has SELinux, crimux does not label containers (as containerd's CRI by
// default, enable_selinux = false), so options asked for are an error rather
// than a container running under another label. Where it has none, the
// options mean nothing, as Kubernetes documents, and are ignored.
func checkSELinux(field string, o *runtime.SELinuxOption, lsm hostLSM) error {
	if o == nil || !lsm.SELinux || (o.User == "" && o.Role == "" && o.Type == "" && o.Level == "") {
		return nil
	}
	return fmt.Errorf("%w: %s: this node has SELinux, and crimux does not apply SELinux labels", backends.ErrInvalid, field)
}
