package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
	"github.com/crimux/crimux/test/images"
)

// hostSecret makes a file on the node, in the run's dir, that no pod may
// read; it returns the dir and the file.
func hostSecret(t *testing.T) (dir, file string) {
	t.Helper()
	dir = filepath.Join(env.Dir, "host-secret-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	file = filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(file, []byte("HOST-SECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

// escapeImage is an image whose only layer is a tree of symlinks that try to
// leave it, absolute, relative, nested and mid-path, and a file and a dir
// that stay inside.
func escapeImage(t *testing.T, secretDir string) string {
	t.Helper()
	climb := strings.Repeat("../", 12)
	l := images.NewLayer()
	l.File("/image-marker", 0o644, []byte("IMAGE\n"))
	l.File("/data/file.txt", 0o644, []byte("IMAGE-FILE\n"))
	l.Dir("/data/sub", 0o755)
	l.Symlink("/escape", "/")
	l.Symlink("/climb", climb)
	l.Symlink("/hostabs", secretDir)
	l.Symlink("/nested/deeper/rel", climb+strings.TrimPrefix(secretDir, "/"))
	l.Symlink("/mid", "/")
	l.Symlink("/data/late", "sub/"+climb)
	l.Symlink("/filelink", "/data/file.txt")
	l.Symlink("/secretlink", filepath.Join(secretDir, "secret.txt"))
	layer, err := l.Build()
	if err != nil {
		t.Fatal(err)
	}
	only, err := images.FromLayers(layer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Registry.Push("escape:v1", only); err != nil {
		t.Fatal(err)
	}
	ref := "crimux.test/escape:v1"
	if _, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: ref}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return ref
}

// An image volume's sub path is resolved inside the image as if its root
// were "/": no symlink in the image reaches the node's files, and what can't
// be resolved inside is refused with InvalidArgument naming the mount.
func TestImageVolumeSubPathEscapes(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	secretDir, _ := hostSecret(t)
	ref := escapeImage(t, secretDir)
	pod := podConfig(t, "subpath")
	podID := runPod(t, pod)
	rel := strings.TrimPrefix(secretDir, "/")

	// Sub paths that stay inside, whatever their links say.
	for _, tc := range []struct{ sub, check string }{
		{"escape", "cat /h/image-marker && test ! -e /h/" + rel + " && test ! -e /h/etc/hostname"},
		{"climb", "cat /h/image-marker && test ! -e /h/" + rel},
		{"mid/data", "cat /h/file.txt"},
		{"data/late", "cat /h/image-marker && test ! -e /h/" + rel},
		{"data/file.txt", "cat /h"},
		{"filelink", "cat /h"},
	} {
		c := ctrConfig("ok-"+strings.NewReplacer("/", "-", ".", "-").Replace(tc.sub), "sleep", "3600")
		c.Mounts = []*runtime.Mount{{ContainerPath: "/h", Readonly: true, Image: &runtime.ImageSpec{Image: ref}, ImageSubPath: tc.sub}}
		id := startContainer(t, podID, pod, c)
		resp, err := rawExecSync(t, id, []string{"sh", "-c", tc.check + " && ! touch /h/x 2>/dev/null"}, 10)
		if err != nil || resp.ExitCode != 0 {
			t.Errorf("sub path %q: %v %v stdout %q stderr %q", tc.sub, resp.GetExitCode(), err, resp.GetStdout(), resp.GetStderr())
		}
		if out := string(resp.GetStdout()); strings.Contains(out, "HOST-SECRET") {
			t.Errorf("sub path %q reached the node's file: %q", tc.sub, out)
		}
		if err := env.Runtime.RemoveContainer(ctx(t), id); err != nil {
			t.Fatal(err)
		}
	}

	// Sub paths that would leave the image: refused, nothing mounted.
	for _, sub := range []string{
		"hostabs/secret.txt",
		"nested/deeper/rel/secret.txt",
		"mid/" + rel + "/secret.txt",
		"escape/" + rel,
		"data/late/" + rel + "/secret.txt",
		"secretlink",
		"../../" + rel,
		"/" + rel,
		"data/../../" + rel,
	} {
		c := ctrConfig("bad", "sleep", "3600")
		c.Mounts = []*runtime.Mount{{ContainerPath: "/h", Readonly: true, Image: &runtime.ImageSpec{Image: ref}, ImageSubPath: sub}}
		_, err := env.Runtime.CreateContainer(ctx(t), podID, c, pod)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "/h") {
			t.Errorf("sub path %q: %v, want InvalidArgument naming the mount /h", sub, err)
		}
	}
	if ms := harness.MountsUnder(filepath.Join(env.Dir, "state", "imagevols")); len(ms) != 0 {
		t.Errorf("image volume mounts left: %v", ms)
	}
}

// A container's log path stays inside its pod's log directory: one that
// climbs out is refused, and a symlink planted in the log dir never makes
// crimux write elsewhere.
func TestLogPathConfined(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	secretDir, secret := hostSecret(t)
	pod := podConfig(t, "logpath")
	podID := runPod(t, pod)
	if err := os.MkdirAll(pod.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, lp := range []string{"../../climbed.log", "ok/../../../climbed.log", secret, ""} {
		if lp == "" {
			continue
		}
		c := ctrConfig("climb", "echo", "PWNED")
		c.LogPath = lp
		_, err := env.Runtime.CreateContainer(ctx(t), podID, c, pod)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "log_path") {
			t.Errorf("log path %q: %v, want InvalidArgument naming log_path", lp, err)
		}
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "climbed.log")); err == nil {
		t.Errorf("a log file was created outside the pod's log dir")
	}

	// Links planted in the pod's log dir: to a file and to a dir.
	if err := os.Symlink(secret, filepath.Join(pod.LogDirectory, "planted.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretDir, filepath.Join(pod.LogDirectory, "planted-dir")); err != nil {
		t.Fatal(err)
	}
	for _, lp := range []string{"planted.log", "planted-dir/c.log"} {
		c := ctrConfig("planted-"+strings.ReplaceAll(filepath.Dir(lp), ".", "x"), "echo", "PWNED")
		c.LogPath = lp
		id, err := env.Runtime.CreateContainer(ctx(t), podID, c, pod)
		if err == nil {
			err = env.Runtime.StartContainer(ctx(t), id)
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("log path %q through a planted link: %v, want InvalidArgument", lp, err)
		}
	}
	if b, _ := os.ReadFile(secret); string(b) != "HOST-SECRET\n" {
		t.Errorf("the node's file was written through a planted log link: %q", b)
	}
	if _, err := os.Stat(filepath.Join(secretDir, "c.log")); err == nil {
		t.Errorf("a log file was created through a planted dir link")
	}

	// A log path in a dir of its own works.
	c := ctrConfig("ok", "echo", "logged")
	c.LogPath = "ok/0.log"
	id := startContainer(t, podID, pod, c)
	waitExited(t, id)
	eventually(t, 10*1e9, "log line", func() error {
		b, err := os.ReadFile(filepath.Join(pod.LogDirectory, "ok", "0.log"))
		if err != nil || !strings.Contains(string(b), "stdout F logged") {
			return fmt.Errorf("log %q: %v", b, err)
		}
		return nil
	})
}

// Strings that become file content or kernel settings are refused when
// they are not what their field means: nothing of such a pod is made.
func TestInjectionRefused(t *testing.T) {
	needEnv(t)
	count := func() int {
		n := 0
		for _, d := range []string{"pods", "netns", "sandboxes"} {
			ents, _ := os.ReadDir(filepath.Join(env.Dir, "state", d))
			n += len(ents)
		}
		return n
	}
	before := count()
	for _, tc := range []struct {
		field string
		mod   func(*runtime.PodSandboxConfig)
	}{
		{"hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "evil\n10.0.0.1 kubernetes.default" }},
		{"dns_config.servers[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.0.0.10\nnameserver 6.6.6.6"}}
		}},
		{"dns_config.searches[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Searches: []string{"cluster.local\noptions debug"}}
		}},
		{"dns_config.options[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Options: []string{"ndots:5 attempts:0"}}
		}},
		{"linux.sysctls", func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1\n0"} }},
		{"linux.sysctls", func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"net/../../kernel/x": "1"} }},
		{"metadata.name", func(c *runtime.PodSandboxConfig) { c.Metadata.Name = "x;IP=" + env.Gateway }},
		{"annotations", func(c *runtime.PodSandboxConfig) { c.Annotations = map[string]string{"a\nb": "1"} }},
	} {
		cfg := podConfig(t, "inject")
		tc.mod(cfg)
		_, err := env.Runtime.RunPodSandbox(ctx(t), cfg, env.Handler)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming the field", tc.field, err)
		}
	}
	if after := count(); after != before {
		t.Errorf("refused pods left %d entries in the state dir", after-before)
	}

	// A valid pod's files are exactly what it asked for.
	pullBusybox(t)
	cfg := podConfig(t, "files")
	cfg.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
	podID := runPod(t, cfg)
	id := startContainer(t, podID, cfg, ctrConfig("c", "sleep", "3600"))
	resp, err := rawExecSync(t, id, []string{"cat", "/etc/resolv.conf", "/etc/hostname"}, 10)
	if err != nil || string(resp.GetStdout()) != "search ns.svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\nfiles\n" {
		t.Errorf("pod files: %q %v", resp.GetStdout(), err)
	}
}

// A second crimux never takes over or sweeps what the first one serves:
// the same socket or directories are refused with a clear message, and one
// on other directories but the same containerd namespace leaves the first's
// pods alone.
func TestOneCrimuxPerSocket(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "first")
	podID := runPod(t, pod)
	ctrID := startContainer(t, podID, pod, ctrConfig("c", "sleep", "3600"))
	base, err := os.ReadFile(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	second := func(name string, replace map[string]string) (string, error) {
		cfg := string(base)
		for k, v := range replace {
			var lines []string
			for _, l := range strings.Split(cfg, "\n") {
				if strings.HasPrefix(l, k+" = ") {
					l = fmt.Sprintf("%s = %q", k, v)
				}
				lines = append(lines, l)
			}
			cfg = strings.Join(lines, "\n")
		}
		p := filepath.Join(env.Dir, name+".toml")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(env.CrimuxBin, "serve", "--config", p)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	other := filepath.Join(env.Dir, "second")
	for _, tc := range []struct {
		desc    string
		replace map[string]string
		want    string
	}{
		{"same everything", nil, "in use by another crimux"},
		{"same socket, other dirs", map[string]string{"root_dir": other + "/root", "state_dir": other + "/state"}, "accepts connections"},
		{"same root_dir, other socket", map[string]string{"socket": other + "/a.sock", "state_dir": other + "/state"}, "root_dir"},
	} {
		out, err := second("second", tc.replace)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: a second crimux: %v\n%s\nwant it to refuse with %q", tc.desc, err, out, tc.want)
		}
	}
	// Other socket and dirs, same containerd namespace: it starts (and
	// sweeps at start), and the first crimux's pod is untouched.
	p := filepath.Join(env.Dir, "third.toml")
	cfg := strings.NewReplacer(env.Socket, other+"/third.sock", filepath.Join(env.Dir, "root"), other+"/root3", filepath.Join(env.Dir, "state"), other+"/state3",
		env.DebugAddr, "127.0.0.1:0", env.MetricsAddr, "127.0.0.1:0").Replace(string(base))
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(env.CrimuxBin, "serve", "--config", p)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*1e9, "the third crimux serving", func() error {
		if !strings.Contains(log.String(), "crimux serving") {
			return fmt.Errorf("log: %s", log.String())
		}
		return nil
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if st := containerState(t, ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("the first crimux's container is %s after another crimux started on the namespace\n%s", st.State, log.String())
	}
	if resp, err := rawExecSync(t, ctrID, []string{"true"}, 10); err != nil || resp.ExitCode != 0 {
		t.Errorf("exec in the first crimux's container: %v %v", resp, err)
	}
	// The first still serves its socket.
	if _, err := env.Runtime.Version(ctx(t), "v1"); err != nil {
		t.Errorf("the first crimux stopped serving: %v", err)
	}
}
