package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crictlBin finds crictl v1.37.0 as `make deps` builds it.
func crictlBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{filepath.Join(*binDir, "crictl"), filepath.Join(repoRoot(), "_output", "bin", "crictl")} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatalf("crictl not found in %s or _output/bin (make deps builds it)", *binDir)
	return ""
}

// crictlFlags points crictl at the test's crimux for both APIs, so that an
// /etc/crictl.yaml naming another endpoint (make up writes one) is never used.
func crictlFlags() []string {
	return []string{"--config", os.DevNull, "--timeout", "60s", "--runtime-endpoint", "unix://" + env.Socket, "--image-endpoint", "unix://" + env.Socket}
}

// crictlCmd is crictl with crictlFlags and args.
func crictlCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(crictlBin(t), append(crictlFlags(), args...)...)
}

func crictl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := crictlCmd(t, args...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("crictl %v: %v\n%s%s", args, err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// The README's walk-through, as a user types it.
func TestCrictl(t *testing.T) {
	needEnv(t)
	dir := t.TempDir()
	uid := fmt.Sprintf("crictl-%d", time.Now().UnixNano())
	pod := map[string]any{
		"metadata":      map[string]any{"name": "crictl-pod", "namespace": "default", "uid": uid},
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{},
	}
	ctr := map[string]any{
		"metadata": map[string]any{"name": "web"},
		"image":    map[string]any{"image": "busybox"},
		"command":  []string{"sh", "-c", "mkdir -p /w && echo crictl-ok > /w/index.html && echo started && exec httpd -f -p 8080 -h /w"},
		"log_path": "web.log",
		"linux":    map[string]any{},
	}
	write := func(name string, v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	podFile, ctrFile := write("pod.json", pod), write("ctr.json", ctr)
	crictl(t, "pull", "busybox")
	args := []string{"runp"}
	if env.Handler != "" {
		args = append(args, "--runtime", env.Handler)
	}
	podID := crictl(t, append(args, podFile)...)
	ctrID := crictl(t, "create", podID, ctrFile, podFile)
	crictl(t, "start", ctrID)
	if out := crictl(t, "exec", ctrID, "cat", "/w/index.html"); out != "crictl-ok" {
		t.Errorf("exec: %q", out)
	}
	eventually(t, 20*time.Second, "crictl logs", func() error {
		out, _ := crictlCmd(t, "logs", ctrID).CombinedOutput()
		if !strings.Contains(string(out), "started") {
			return fmt.Errorf("logs %q", out)
		}
		return nil
	})
	// port-forward: a local port through crimux's streaming server into the pod.
	port := 30000 + time.Now().Nanosecond()%20000
	pf := crictlCmd(t, "port-forward", podID, fmt.Sprintf("%d:8080", port))
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	eventually(t, 20*time.Second, "port-forward", func() error {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "crictl-ok" {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})
	_ = pf.Process.Kill()
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	if out := crictl(t, "pods", "-q", "--id", podID); out != "" {
		t.Errorf("pod still listed: %q", out)
	}
	assertNoLeaks(t, []string{podID}, []string{ctrID})
}
