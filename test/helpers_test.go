package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

var podSeq int

func podConfig(t *testing.T, name string) *runtime.PodSandboxConfig {
	t.Helper()
	podSeq++
	uid := fmt.Sprintf("%s-%d-%d", name, time.Now().UnixNano(), podSeq)
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "crimux-test", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(env.Dir, "logs", uid),
		Labels:       map[string]string{"test": t.Name(), "pod": name},
		Annotations:  map[string]string{"crimux.test/annotation": "yes"},
		Linux:        &runtime.LinuxPodSandboxConfig{},
	}
}

func runPod(t *testing.T, cfg *runtime.PodSandboxConfig) string {
	t.Helper()
	id, err := env.Runtime.RunPodSandbox(ctx(t), cfg, env.Handler)
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = env.Runtime.StopPodSandbox(c, id)
		_ = env.Runtime.RemovePodSandbox(c, id)
	})
	return id
}

func pullBusybox(t *testing.T) {
	t.Helper()
	if _, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.Busybox}, nil, nil); err != nil {
		t.Fatalf("pull busybox: %v", err)
	}
}

func ctrConfig(name string, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: harness.Busybox},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"ctr": name},
		Linux:    &runtime.LinuxContainerConfig{},
	}
}

func startContainer(t *testing.T, podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t.Helper()
	id, err := env.Runtime.CreateContainer(ctx(t), podID, cfg, pod)
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	if err := env.Runtime.StartContainer(ctx(t), id); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
	}
	return id
}

// eventually retries f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func containerState(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	st, err := env.Runtime.ContainerStatus(ctx(t), id, false)
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return st.Status
}

func waitExited(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	var st *runtime.ContainerStatus
	eventually(t, time.Minute, "container exit", func() error {
		st = containerState(t, id)
		if st.State != runtime.ContainerState_CONTAINER_EXITED {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	return st
}

func podIP(t *testing.T, id string) string {
	t.Helper()
	st, err := env.Runtime.PodSandboxStatus(ctx(t), id, false)
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	ip := st.Status.GetNetwork().GetIp()
	if net.ParseIP(ip) == nil {
		t.Fatalf("pod %s has no IP: %q", id, ip)
	}
	return ip
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// logLines returns the CRI log entries of a file as (stream, tag, text).
func logLines(t *testing.T, path string) [][3]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	defer f.Close()
	var out [][3]string
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed CRI log line %q", s.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Fatalf("bad timestamp in %q: %v", s.Text(), err)
		}
		out = append(out, [3]string{parts[1], parts[2], parts[3]})
	}
	return out
}

// ctrdClient talks to the harness's containerd in crimux's namespace.
// ctrdTask is container id's task, straight from containerd.
func ctrdTask(t *testing.T, c *client.Client, id string) client.Task {
	t.Helper()
	cont, err := c.LoadContainer(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := cont.Task(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func ctrdClient(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(env.CtrdSock, client.WithDefaultNamespace("crimux-test"))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// assertNoLeaks checks that nothing of the given pods is left: containerd
// containers and tasks, netns files, mounts, pod dirs.
func assertNoLeaks(t *testing.T, podIDs []string, ctrIDs []string) {
	t.Helper()
	c := ctrdClient(t)
	cctx := context.Background()
	for _, id := range append(append([]string{}, podIDs...), ctrIDs...) {
		if _, err := c.LoadContainer(cctx, id); err == nil {
			t.Errorf("containerd container %s is left behind", id)
		}
		for _, ns := range []string{"netns", "userns"} {
			if _, err := os.Stat(filepath.Join(env.Dir, "state", ns, id)); err == nil {
				t.Errorf("%s of %s is left behind", ns, id)
			}
		}
		if _, err := os.Stat(filepath.Join(env.Dir, "state", "pods", id)); err == nil {
			t.Errorf("pod dir of %s is left behind", id)
		}
		for _, m := range harness.MountsUnder(env.Dir) {
			if strings.Contains(m, id) {
				t.Errorf("mount %s is left behind", m)
			}
		}
	}
}

// sandboxCgroupFile reads a file of the pod sandbox's own cgroup: v1File
// under the controller's hierarchy, or v2File on a unified-only host.
func sandboxCgroupFile(t *testing.T, podID, controller, v1File, v2File string) (string, error) {
	t.Helper()
	root, file := filepath.Join("/sys/fs/cgroup", controller), v1File
	if _, err := os.Stat(root); err != nil {
		root, file = "/sys/fs/cgroup", v2File
	}
	var dir string
	for pat := filepath.Join(root, podID); dir == "" && strings.Count(pat, "/") < 10; pat = filepath.Join(filepath.Dir(pat), "*", podID) {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			dir = m[0]
		}
	}
	if dir == "" {
		return "", fmt.Errorf("no %s cgroup named %s under %s", controller, podID, root)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}
