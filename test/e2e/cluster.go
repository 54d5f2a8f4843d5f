package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crimux/crimux/test/harness"
)

// cluster is a control plane of its own (etcd and kube-apiserver on
// loopback) and a kubelet pointed at the harness's crimux.
type cluster struct {
	env     *harness.Env
	k8sBin  string
	dir     string
	apiPort int
	kubeCfg string
	// kubelet's own dirs and the cgroup root it runs pods under.
	kubeletDir string
	cgroupRoot string
	kubeletLog string
	podLogs    string

	etcdURL string

	etcd, apiserver, kubelet *exec.Cmd
	sysctls                  map[string]string // saved before the kubelet changed them
	// madeVarLib: /var/lib/kubelet did not exist before this kubelet (which
	// puts its device-plugin socket there whatever its root dir); removed at stop.
	madeVarLib bool
}

const (
	adminToken   = "crimux-e2e-admin-token"
	kubeletToken = "crimux-e2e-kubelet-token"
	nodeName     = "localhost"
)

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster(env *harness.Env, k8sBin string) (*cluster, error) {
	c := &cluster{env: env, k8sBin: k8sBin, dir: filepath.Join(env.Dir, "k8s")}
	for _, d := range []string{"pki", "etcd", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.writePKI(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(); err != nil {
		return c, err
	}
	if err := c.startAPIServer(); err != nil {
		return c, err
	}
	if err := c.startKubelet(); err != nil {
		return c, err
	}
	return c, nil
}

// writePKI makes a CA, the API server's serving cert, its client cert for
// the kubelet, a service account key, a token file and a kubeconfig.
func (c *cluster) writePKI() error {
	pki := filepath.Join(c.dir, "pki")
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crimux-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, tmpl *x509.Certificate) error {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(pki, name+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(filepath.Join(pki, name+".key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	}
	if err := writePEM(filepath.Join(pki, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	if err := issue("apiserver", 2, &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, DNSNames: []string{"localhost", "kubernetes", "kubernetes.default"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	if err := issue("apiserver-kubelet-client", 3, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(pki, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	pub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err := writePEM(filepath.Join(pki, "sa.pub"), "PUBLIC KEY", pub); err != nil {
		return err
	}
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,system:node:%s,kubelet,system:nodes\n", adminToken, kubeletToken, nodeName)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	if c.apiPort, err = freePort(); err != nil {
		return err
	}
	kubeconfig := func(token string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://127.0.0.1:%d", certificate-authority: %q}
users:
- name: u
  user: {token: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: u}
current-context: e2e
`, c.apiPort, filepath.Join(pki, "ca.crt"), token)
	}
	c.kubeCfg = filepath.Join(c.dir, "admin.kubeconfig")
	if err := os.WriteFile(c.kubeCfg, []byte(kubeconfig(adminToken)), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, "kubelet.kubeconfig"), []byte(kubeconfig(kubeletToken)), 0o600)
}

func writePEM(p, typ string, der []byte) error {
	return os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// start runs a service in its own process group, its output in dir/name.log
// and its pid in the run's dir (the harness sweep kills it after a crash).
func (c *cluster) start(name string, args ...string) (*exec.Cmd, error) {
	logPath := filepath.Join(c.dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(c.k8sBin, name), args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "PATH="+c.env.BinDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	_ = os.WriteFile(filepath.Join(c.env.Dir, "e2e-"+name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	return cmd, nil
}

func (c *cluster) startEtcd() error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcd, err = c.start("etcd", "--name", "e2e", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "e2e="+pu,
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	c.etcdURL = cu
	return waitFor(30*time.Second, "etcd", func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", client), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func (c *cluster) startAPIServer() error {
	pki := filepath.Join(c.dir, "pki")
	var err error
	c.apiserver, err = c.start("kube-apiserver",
		"--etcd-servers", c.etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(c.apiPort),
		// Loopback may not be advertised as the kubernetes service endpoint.
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file", filepath.Join(pki, "apiserver.key"),
		"--client-ca-file", filepath.Join(pki, "ca.crt"),
		"--token-auth-file", filepath.Join(pki, "tokens.csv"),
		"--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--kubelet-client-certificate", filepath.Join(pki, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key", filepath.Join(pki, "apiserver-kubelet-client.key"),
		// The API server reaches the kubelet by name (for exec, logs,
		// port-forward); "localhost" resolves without DNS.
		"--kubelet-preferred-address-types", "Hostname",
		"--allow-privileged=true",
		// No controller-manager makes service accounts; pods run without.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--v", "1")
	if err != nil {
		return err
	}
	return waitFor(120*time.Second, "kube-apiserver", func() error {
		_, err := c.kubectl(context.Background(), "get", "--raw", "/readyz")
		return err
	})
}

// prepareCgroupRoot makes the kubelet's cgroup root in every v1 hierarchy
// (cpuset with the node's cpus and mems), as the kubelet requires.
func (c *cluster) prepareCgroupRoot() error {
	c.cgroupRoot = harness.CgroupPrefix + c.env.RunID
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, e := range ents {
		base := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			continue
		}
		d := filepath.Join(base, c.cgroupRoot)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if e.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(base, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root %s: %w", f, err)
				}
			}
		}
	}
	return nil
}

// kernelTunables are the sysctls a kubelet sets at start (unless it only
// checks them); they are restored when the run ends.
var kernelTunables = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

func (c *cluster) startKubelet() error {
	if err := c.prepareCgroupRoot(); err != nil {
		return err
	}
	c.sysctls = map[string]string{}
	for _, k := range kernelTunables {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			c.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	c.kubeletDir = filepath.Join(c.dir, "kubelet")
	if _, err := os.Stat("/var/lib/kubelet"); os.IsNotExist(err) {
		c.madeVarLib = true
	}
	c.podLogs = filepath.Join(c.dir, "pod-logs")
	port, err := freePort()
	if err != nil {
		return err
	}
	resolv := filepath.Join(c.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\nsearch crimux.invalid\n"), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: %s
cgroupsPerQOS: true
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
podLogsDir: %s
resolvConf: %s
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "50Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization: {mode: AlwaysAllow}
featureGates: {}
`, c.env.Socket, c.env.Socket, c.cgroupRoot, port, c.podLogs, resolv, filepath.Join(c.dir, "pki", "ca.crt"))
	cfgPath := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	c.kubeletLog = filepath.Join(c.dir, "kubelet.log")
	c.kubelet, err = c.start("kubelet", "--config", cfgPath, "--kubeconfig", filepath.Join(c.dir, "kubelet.kubeconfig"),
		"--root-dir", c.kubeletDir, "--cert-dir", filepath.Join(c.kubeletDir, "pki"), "--hostname-override", nodeName, "--v", "2")
	if err != nil {
		return err
	}
	return c.waitNodeReady()
}

func (c *cluster) waitNodeReady() error {
	return waitFor(180*time.Second, "node Ready", func() error {
		var n struct {
			Status struct {
				Conditions []struct{ Type, Status, Message string }
			}
		}
		if err := c.getJSON(context.Background(), &n, "get", "node", nodeName); err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				if cond.Status == "True" {
					return nil
				}
				return fmt.Errorf("node not ready: %s", cond.Message)
			}
		}
		return errors.New("no Ready condition")
	})
}

// restartKubelet stops the kubelet and starts it again with the same flags.
func (c *cluster) restartKubelet() error {
	stopCmd(c.kubelet)
	args := c.kubelet.Args[1:]
	var err error
	c.kubelet, err = c.start("kubelet", args...)
	if err != nil {
		return err
	}
	return c.waitNodeReady()
}

func stopCmd(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	time.Sleep(200 * time.Millisecond)
}

// stop ends the kubelet and the control plane, restores the sysctls the
// kubelet changed and removes its cgroup root.
func (c *cluster) stop() {
	stopCmd(c.kubelet)
	stopCmd(c.apiserver)
	stopCmd(c.etcd)
	for k, v := range c.sysctls {
		_ = os.WriteFile("/proc/sys/"+k, []byte(v), 0o644)
	}
	if c.cgroupRoot != "" {
		harness.RemoveCgroupTree(c.cgroupRoot)
	}
	if c.madeVarLib {
		_ = os.RemoveAll("/var/lib/kubelet")
	}
}

// kubectl runs kubectl as admin and returns its standard output.
func (c *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	return c.kubectlIn(ctx, nil, args...)
}

func (c *cluster) kubectlIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.k8sBin, "kubectl"), append([]string{"--kubeconfig", c.kubeCfg}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (c *cluster) apply(yaml string) error {
	_, err := c.kubectlIn(context.Background(), []byte(yaml), "apply", "-f", "-")
	return err
}

func (c *cluster) getJSON(ctx context.Context, v any, args ...string) error {
	out, err := c.kubectl(ctx, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// waitFor retries f until it returns nil or d passes.
func waitFor(d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = f(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
