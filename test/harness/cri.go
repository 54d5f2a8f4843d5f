package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"
	internalapi "k8s.io/cri-api/pkg/apis"
	cri "k8s.io/cri-client/pkg"

	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/test/images"
)

// CRIPause is the pause image containerd's own CRI runs its sandboxes with
// in tests (crimux's pause program, served by the test registry).
const CRIPause = "crimux.test/pause:cri"

// ContainerdCRI is a containerd of its own with its built-in CRI plugin
// enabled: the runtime crimux is compared with, on the same binaries, and
// the remote a forwarding handler talks to. It has its own root, state,
// socket, CNI bridge and subnet, and handlers named as crimux's (runc, and
// gvisor when runsc is installed).
type ContainerdCRI struct {
	Dir     string
	Socket  string
	Bridge  string
	Subnet  string
	Runtime internalapi.RuntimeService
	Image   internalapi.ImageManagerService

	cmd *exec.Cmd
	log string
}

// StartContainerdCRI starts containerd with its CRI plugin under e's run dir
// (name tells several apart: it is part of the dir, socket and bridge).
func (e *Env) StartContainerdCRI(name string) (*ContainerdCRI, error) {
	return e.StartContainerdCRIWith(name, "")
}

// StartContainerdCRIWith is StartContainerdCRI with more TOML appended to
// its config (more runtimes, for instance).
func (e *Env) StartContainerdCRIWith(name, extraConfig string) (*ContainerdCRI, error) {
	if len(name) > 1 {
		return nil, fmt.Errorf("containerd CRI name %q: one character, it is part of a bridge name", name)
	}
	pause, err := pauseImage(filepath.Join(e.Dir, "crimux-pause"))
	if err != nil {
		return nil, err
	}
	if _, err := e.Registry.Push(strings.TrimPrefix(CRIPause, "crimux.test/"), pause); err != nil {
		return nil, err
	}
	c := &ContainerdCRI{Dir: filepath.Join(e.Dir, "cri-"+name), Bridge: e.Bridge + name}
	c.Socket = filepath.Join(c.Dir, "containerd.sock")
	if err := os.MkdirAll(filepath.Join(c.Dir, "net.d"), 0o755); err != nil {
		return nil, err
	}
	// A subnet next to the run's own: 10.<b>.<c+128+name mod 256>.0/24, or
	// for a /22 (WideSubnets) the /22 at c+128.
	prefix, bits, _ := strings.Cut(e.Subnet, "/")
	parts := strings.Split(prefix, ".")
	third, _ := strconv.Atoi(parts[2])
	if bits == "24" {
		c.Subnet = fmt.Sprintf("%s.%s.%d.0/24", parts[0], parts[1], (third+128+int(name[0]))%256)
	} else {
		c.Subnet = fmt.Sprintf("%s.%s.%d.0/%s", parts[0], parts[1], (third+128)%256, bits)
	}
	conflist := cni.DefaultConflist("crimux-cri-"+e.RunID+name, c.Bridge, c.Subnet, false)
	conflist = strings.Replace(conflist, `"type": "host-local",`, fmt.Sprintf(`"type": "host-local", "dataDir": %q,`, filepath.Join(c.Dir, "ipam")), 1)
	if err := os.WriteFile(filepath.Join(c.Dir, "net.d", "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Dir(e.ctrdBin)
	runc, _ := exec.LookPath("runc")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = %t
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/opt/cni/bin', '/usr/lib/cni']
    conf_dir = %q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, filepath.Join(c.Dir, "root"), filepath.Join(c.Dir, "state"), c.Socket, c.Socket+".ttrpc",
		CRIPause, filepath.Join(e.Dir, "certs.d"), !canLowerOOMScore(), filepath.Join(c.Dir, "net.d"), runc)
	if runsc, err := exec.LookPath("runsc"); err == nil {
		shimCfg := filepath.Join(c.Dir, "runsc.toml")
		body := fmt.Sprintf("binary_name = %q\nroot = %q\n\n[runsc_config]\nplatform = \"systrap\"\nnet-raw = \"true\"\noci-seccomp = \"true\"\n", runsc, filepath.Join(c.Dir, "runsc"))
		if err := os.WriteFile(shimCfg, []byte(body), 0o644); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf(`[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.gvisor]
  runtime_type = 'io.containerd.runsc.v1'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.gvisor.options]
    TypeUrl = 'io.containerd.runsc.v1.options'
    ConfigPath = %q
`, shimCfg)
	}
	cfg += extraConfig
	cfgPath := filepath.Join(c.Dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	c.log = filepath.Join(c.Dir, "containerd.log")
	lf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.ctrdBin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no Pdeathsig: see startContainerd
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd with CRI: %w", err)
	}
	c.cmd = cmd
	e.logs = append(e.logs, c.log)
	_ = os.WriteFile(filepath.Join(e.Dir, "containerd-cri-"+name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	if err := waitSocket(c.Socket, 30*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	ep := "unix://" + c.Socket
	// The CRI plugin answers once it has loaded what it had (on a restart,
	// a while after the socket appears), and is ready once its network is.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.Runtime, err = cri.NewRemoteRuntimeService(context.Background(), ep, 2*time.Minute, nil, false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	if c.Image, err = cri.NewRemoteImageService(context.Background(), ep, 2*time.Minute, nil, false); err != nil {
		c.Stop()
		return nil, err
	}
	for {
		st, err := c.Runtime.Status(context.Background(), false)
		ready := err == nil
		for _, cond := range st.GetStatus().GetConditions() {
			if cond.Type == "RuntimeReady" || cond.Type == "NetworkReady" {
				ready = ready && cond.Status
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("containerd's CRI not ready: %v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c, nil
}

// PID is the daemon's pid, or 0.
func (c *ContainerdCRI) PID() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Signal sends sig to the daemon (SIGSTOP, SIGCONT: a remote that hangs).
func (c *ContainerdCRI) Signal(sig syscall.Signal) error {
	if c.cmd == nil || c.cmd.Process == nil {
		return fmt.Errorf("containerd CRI is not running")
	}
	return signalProcess(c.cmd.Process, sig)
}

// Stop stops the daemon; its pods are left to the run's cleanup.
func (c *ContainerdCRI) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
		}
		c.cmd = nil
	}
}

// canLowerOOMScore: this process holds CAP_SYS_RESOURCE, without which a
// runtime must not ask for an oom_score_adj below its own.
func canLowerOOMScore() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(uint(unix.CAP_SYS_RESOURCE)%32)) != 0
}

// pauseImage is an image of crimux's static pause program.
func pauseImage(bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read pause program: %w", err)
	}
	l := images.NewLayer()
	l.File("/pause", 0o755, data)
	img, err := images.WithLayer(empty.Image, l)
	if err != nil {
		return nil, err
	}
	img, err = images.WithConfig(img, func(c *v1.Config) { c.Entrypoint = []string{"/pause"} })
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// RestartRemote stops the fwd handler's remote (Options.Forward) and
// starts it again on the same root, socket and network: its pods live on
// in their shims and its CRI finds them again.
func (e *Env) RestartRemote() error {
	if e.Remote == nil {
		return fmt.Errorf("no remote (Options.Forward)")
	}
	e.Remote.Stop()
	rc, err := e.StartContainerdCRI("f")
	if err != nil {
		return err
	}
	e.Remote = rc
	return nil
}
