package containerd

import (
	"errors"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

func TestAppArmorProfile(t *testing.T) {
	loaded := func(name string) (bool, error) { return name == "k8s-nginx", nil }
	on := hostLSM{AppArmor: true, appArmorLoaded: loaded}
	off := hostLSM{}
	prof := func(t runtime.SecurityProfile_ProfileType, ref string) *runtime.LinuxContainerSecurityContext {
		return &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: t, LocalhostRef: ref}}
	}
	for _, tc := range []struct {
		desc       string
		sc         *runtime.LinuxContainerSecurityContext
		privileged bool
		lsm        hostLSM
		want       string
		invalid    bool
	}{
		{desc: "no AppArmor, nothing asked", sc: nil, lsm: off, want: ""},
		{desc: "no AppArmor, unconfined", sc: prof(runtime.SecurityProfile_Unconfined, ""), lsm: off, want: ""},
		{desc: "no AppArmor, runtime default is refused", sc: prof(runtime.SecurityProfile_RuntimeDefault, ""), lsm: off, invalid: true},
		{desc: "no AppArmor, localhost is refused", sc: prof(runtime.SecurityProfile_Localhost, "k8s-nginx"), lsm: off, invalid: true},
		{desc: "no AppArmor, deprecated runtime/default is refused", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, lsm: off, invalid: true},
		{desc: "nothing asked gets the default", sc: nil, lsm: on, want: defaultAppArmorProfile},
		{desc: "runtime default", sc: prof(runtime.SecurityProfile_RuntimeDefault, ""), lsm: on, want: defaultAppArmorProfile},
		{desc: "privileged gets none", sc: prof(runtime.SecurityProfile_RuntimeDefault, ""), privileged: true, lsm: on, want: ""},
		{desc: "unconfined", sc: prof(runtime.SecurityProfile_Unconfined, ""), lsm: on, want: ""},
		{desc: "localhost loaded", sc: prof(runtime.SecurityProfile_Localhost, "k8s-nginx"), lsm: on, want: "k8s-nginx"},
		{desc: "localhost with prefix", sc: prof(runtime.SecurityProfile_Localhost, "localhost/k8s-nginx"), lsm: on, want: "k8s-nginx"},
		{desc: "localhost not loaded", sc: prof(runtime.SecurityProfile_Localhost, "nope"), lsm: on, invalid: true},
		{desc: "localhost ref on runtime default", sc: prof(runtime.SecurityProfile_RuntimeDefault, "x"), lsm: on, invalid: true},
		{desc: "deprecated localhost/", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, lsm: on, want: "k8s-nginx"},
		{desc: "deprecated garbage", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "x"}, lsm: on, invalid: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := appArmorProfile(tc.sc, tc.privileged, tc.lsm)
			if tc.invalid {
				if !errors.Is(err, backends.ErrInvalid) {
					t.Fatalf("got %q, %v; want an InvalidArgument error", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCheckSELinux(t *testing.T) {
	opt := &runtime.SELinuxOption{Level: "s0:c1,c2"}
	if err := checkSELinux("f", opt, hostLSM{}); err != nil {
		t.Errorf("a node without SELinux: %v", err)
	}
	if err := checkSELinux("f", nil, hostLSM{SELinux: true}); err != nil {
		t.Errorf("no options on an SELinux node: %v", err)
	}
	if err := checkSELinux("f", opt, hostLSM{SELinux: true}); !errors.Is(err, backends.ErrInvalid) {
		t.Errorf("options on an SELinux node: %v, want InvalidArgument", err)
	}
}
