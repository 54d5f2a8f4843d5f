// Package cni is crimux's one network layer: it loads the CNI network
// configuration (the global conf dir or a handler's own), runs ADD and DEL with
// a fresh bounded context, and returns the pod IPs from the CNI result.
package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/crimux/crimux/internal/metrics"
)

// ErrNoConfig is returned while no network configuration exists.
var ErrNoConfig = errors.New("no network config found")

// IfName is the pod's interface name, as every CRI runtime uses it.
const IfName = "eth0"

// Plugin runs CNI network lists; libcni's CNIConfig is one, tests use fakes.
type Plugin interface {
	AddNetworkList(ctx context.Context, net *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	DelNetworkList(ctx context.Context, net *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
}

// PortMapping is one hostPort → containerPort mapping (the portmap capability).
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Pod says which pod a network operation is for.
type Pod struct {
	ID        string
	Name      string
	Namespace string
	UID       string
	NetNS     string
	// ConfDir overrides the manager's conf dir (a handler's own networks).
	ConfDir      string
	PortMappings []PortMapping
	// DNS is passed to plugins with the dns capability.
	DNS *DNS
	// Bandwidth is passed to plugins with the bandwidth capability when set.
	CgroupPath string
}

// DNS is the pod's DNS configuration for plugins that want it.
type DNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Manager is the CNI layer. It is safe for concurrent use: operations on
// different pods never wait on each other.
type Manager struct {
	confDir string
	timeout time.Duration
	plugin  Plugin
}

// Option configures a Manager.
type Option func(*Manager)

// WithPlugin replaces the libcni executor (tests).
func WithPlugin(p Plugin) Option { return func(m *Manager) { m.plugin = p } }

// New returns a manager that finds plugin binaries in binDirs and configs in confDir.
func New(binDirs []string, confDir, cacheDir string, timeout time.Duration, opts ...Option) *Manager {
	if timeout <= 0 {
		timeout = time.Minute
	}
	m := &Manager{
		confDir: confDir,
		timeout: timeout,
		plugin:  libcni.NewCNIConfigWithCacheDir(binDirs, cacheDir, nil),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Load returns the first network config list of dir in lexical order, as the
// kubelet's network plugins always have: .conflist, .conf and .json files.
func (m *Manager) Load(dir string) (*libcni.NetworkConfigList, error) {
	if dir == "" {
		dir = m.confDir
	}
	files, err := libcni.ConfFiles(dir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, fmt.Errorf("read cni conf dir %q: %w", dir, err)
	}
	sort.Strings(files)
	var errs []error
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
		} else {
			var conf *libcni.PluginConfig
			conf, err = libcni.ConfFromFile(f)
			if err == nil {
				if conf.Network.Type == "" {
					err = fmt.Errorf("no plugin type")
				} else {
					list, err = libcni.ConfListFromConf(conf)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load cni config %q: %w", f, err))
			continue
		}
		return list, nil
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w in %q: %w", ErrNoConfig, dir, errors.Join(errs...))
	}
	return nil, fmt.Errorf("%w in %q", ErrNoConfig, dir)
}

// Status returns nil when a network config is loadable from dir (or the
// default dir), else the reason the network is not ready.
func (m *Manager) Status(dir string) error {
	_, err := m.Load(dir)
	return err
}

func runtimeConf(p Pod) *libcni.RuntimeConf {
	caps := map[string]any{}
	if len(p.PortMappings) > 0 {
		caps["portMappings"] = p.PortMappings
	}
	if p.DNS != nil {
		caps["dns"] = p.DNS
	}
	if p.CgroupPath != "" {
		caps["cgroupPath"] = p.CgroupPath
	}
	return &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: caps,
	}
}

// Setup runs CNI ADD for the pod and returns its IPs, IPv4 first. It uses its
// own bounded context: a client that gave up must not leave a half-made network.
// On failure it runs DEL so nothing stays allocated.
func (m *Manager) Setup(p Pod) ([]string, error) {
	list, err := m.Load(p.ConfDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	rt := runtimeConf(p)
	start := time.Now()
	res, err := m.plugin.AddNetworkList(ctx, list, rt)
	metrics.CNIDuration.WithLabelValues("add").Observe(time.Since(start).Seconds())
	if err != nil {
		metrics.CNIFailures.WithLabelValues("add").Inc()
		addErr := fmt.Errorf("cni add network %q for pod %s/%s: %w", list.Name, p.Namespace, p.Name, err)
		if delErr := m.del(list, rt); delErr != nil {
			return nil, errors.Join(addErr, delErr)
		}
		return nil, addErr
	}
	ips, err := ipsOf(res)
	if err != nil {
		err = fmt.Errorf("cni network %q for pod %s/%s: %w", list.Name, p.Namespace, p.Name, err)
		if delErr := m.del(list, rt); delErr != nil {
			return nil, errors.Join(err, delErr)
		}
		return nil, err
	}
	return ips, nil
}

// Teardown runs CNI DEL for the pod. A missing config is an error: the
// allocation can't be released without it.
func (m *Manager) Teardown(p Pod) error {
	list, err := m.Load(p.ConfDir)
	if err != nil {
		return err
	}
	return m.del(list, runtimeConf(p))
}

// TeardownOrphan runs CNI DEL for a pod crimux has no record of, from what
// libcni cached at its ADD (its CNI args and capabilities: port mappings),
// or from its ID alone when nothing was cached. confDirs are tried in turn
// (the pod's handler is unknown); the first that has the network is used.
func (m *Manager) TeardownOrphan(confDirs []string, id, netns string) error {
	var errs []error
	for _, dir := range confDirs {
		list, err := m.Load(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: IfName}
		if c, ok := m.plugin.(interface {
			GetNetworkListCachedConfig(*libcni.NetworkConfigList, *libcni.RuntimeConf) ([]byte, *libcni.RuntimeConf, error)
		}); ok {
			if _, cached, err := c.GetNetworkListCachedConfig(list, rt); err == nil && cached != nil {
				cached.NetNS = netns
				rt = cached
			}
		}
		return m.del(list, rt)
	}
	return errors.Join(errs...)
}

func (m *Manager) del(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	// A netns that is already gone still needs DEL for IPAM; plugins accept an empty netns.
	if rt.NetNS != "" {
		if _, err := os.Stat(rt.NetNS); err != nil {
			c := *rt
			c.NetNS = ""
			rt = &c
		}
	}
	start := time.Now()
	err := m.plugin.DelNetworkList(ctx, list, rt)
	metrics.CNIDuration.WithLabelValues("del").Observe(time.Since(start).Seconds())
	if err != nil {
		metrics.CNIFailures.WithLabelValues("del").Inc()
		return fmt.Errorf("cni del network %q for %s: %w", list.Name, rt.ContainerID, err)
	}
	return nil
}

// ipsOf returns the addresses the result gives the pod's interface, IPv4 first.
func ipsOf(res types.Result) ([]string, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert cni result: %w", err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i >= 0 && i < len(r.Interfaces) && r.Interfaces[i].Sandbox == "" {
				continue // the host side of a veth, not the pod
			}
		}
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else if ip.Address.IP != nil {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	ips := append(v4, v6...)
	if len(ips) == 0 {
		return nil, errors.New("cni result has no IP for the pod")
	}
	return ips, nil
}

// DefaultConflist is the bridge + host-local + portmap network `make up` writes
// when none exists, and tests use with their own names.
func DefaultConflist(name, bridge, subnet string, ipMasq bool) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": %t,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, name, bridge, ipMasq, subnet)
}

// WriteDefault writes DefaultConflist into dir unless a config exists there.
func WriteDefault(dir string) (string, error) {
	m := &Manager{confDir: dir}
	if _, err := m.Load(dir); err == nil {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "10-crimux.conflist")
	return p, os.WriteFile(p, []byte(DefaultConflist("crimux", "crimux0", "10.88.0.0/16", true)), 0o644)
}
