package cni

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// fakePlugin records calls and injects errors.
type fakePlugin struct {
	mu      sync.Mutex
	AddErr  error
	DelErr  error
	Result  types.Result
	adds    []*libcni.RuntimeConf
	dels    []*libcni.RuntimeConf
	lastNet string
}

func (f *fakePlugin) AddNetworkList(_ context.Context, n *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, rt)
	f.lastNet = n.Name
	return f.Result, f.AddErr
}

func (f *fakePlugin) DelNetworkList(_ context.Context, n *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels = append(f.dels, rt)
	return f.DelErr
}

func result(ips ...string) types.Result {
	zero, one := 0, 1
	r := &current.Result{CNIVersion: "1.0.0", Interfaces: []*current.Interface{{Name: "veth0"}, {Name: "eth0", Sandbox: "/ns"}}}
	r.IPs = append(r.IPs, &current.IPConfig{Interface: &zero, Address: net.IPNet{IP: net.ParseIP("10.0.0.1"), Mask: net.CIDRMask(24, 32)}})
	for _, ip := range ips {
		r.IPs = append(r.IPs, &current.IPConfig{Interface: &one, Address: net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(24, 32)}})
	}
	return r
}

func confDir(t *testing.T, files map[string]string) string {
	d := t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(d, n), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestSetup(t *testing.T) {
	good := DefaultConflist("net-b", "br0", "10.0.0.0/24", false)
	for _, tc := range []struct {
		desc      string
		files     map[string]string
		plugin    *fakePlugin
		wantIPs   []string
		wantErr   string
		wantDels  int
		wantNet   string
		wantPorts bool
	}{
		{desc: "first config in lexical order, IPv4 first, host side skipped", files: map[string]string{"20-b.conflist": good, "10-a.conf": `{"cniVersion":"1.0.0","name":"net-a","type":"bridge"}`},
			plugin: &fakePlugin{Result: result("fd00::2", "10.0.0.2")}, wantIPs: []string{"10.0.0.2", "fd00::2"}, wantNet: "net-a", wantPorts: true},
		{desc: "no config", files: nil, plugin: &fakePlugin{}, wantErr: "no network config found"},
		{desc: "broken config is named", files: map[string]string{"10-x.conflist": "{"}, plugin: &fakePlugin{}, wantErr: "10-x.conflist"},
		{desc: "add fails: del runs", files: map[string]string{"10.conflist": good}, plugin: &fakePlugin{AddErr: errors.New("boom")}, wantErr: "boom", wantDels: 1},
		{desc: "result without pod IP: del runs", files: map[string]string{"10.conflist": good}, plugin: &fakePlugin{Result: result()}, wantErr: "no IP", wantDels: 1},
		{desc: "add and del fail: both reported", files: map[string]string{"10.conflist": good}, plugin: &fakePlugin{AddErr: errors.New("boom"), DelErr: errors.New("also")}, wantErr: "also", wantDels: 1},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			m := New(nil, confDir(t, tc.files), t.TempDir(), 0, WithPlugin(tc.plugin))
			ips, err := m.Setup(Pod{ID: "id", Name: "p", Namespace: "ns", NetNS: "/nonexistent", PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if strings.Join(ips, ",") != strings.Join(tc.wantIPs, ",") {
				t.Errorf("ips = %v, want %v", ips, tc.wantIPs)
			}
			if len(tc.plugin.dels) != tc.wantDels {
				t.Errorf("%d DELs, want %d", len(tc.plugin.dels), tc.wantDels)
			}
			if tc.wantNet != "" && tc.plugin.lastNet != tc.wantNet {
				t.Errorf("network %q, want %q", tc.plugin.lastNet, tc.wantNet)
			}
			if tc.wantPorts {
				rt := tc.plugin.adds[0]
				if rt.IfName != "eth0" || rt.CapabilityArgs["portMappings"] == nil {
					t.Errorf("runtime conf %+v", rt)
				}
			}
		})
	}
}

func TestTeardownWithoutNetNS(t *testing.T) {
	f := &fakePlugin{}
	m := New(nil, confDir(t, map[string]string{"10.conflist": DefaultConflist("n", "b", "10.0.0.0/24", false)}), t.TempDir(), 0, WithPlugin(f))
	if err := m.Teardown(Pod{ID: "id", NetNS: "/nonexistent/netns"}); err != nil {
		t.Fatal(err)
	}
	if len(f.dels) != 1 || f.dels[0].NetNS != "" {
		t.Fatalf("DEL with a gone netns must pass an empty netns: %+v", f.dels)
	}
}

func TestStatus(t *testing.T) {
	m := New(nil, t.TempDir(), t.TempDir(), 0)
	if err := m.Status(""); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("status without config: %v", err)
	}
	d := confDir(t, map[string]string{"10.conflist": DefaultConflist("n", "b", "10.0.0.0/24", false)})
	if err := m.Status(d); err != nil {
		t.Fatalf("status with config: %v", err)
	}
}
