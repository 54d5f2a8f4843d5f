package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crimuxReload runs `crimux reload` for the test's crimux.
func crimuxReload(t *testing.T) (string, error) {
	t.Helper()
	out, err := exec.Command(env.CrimuxBin, "reload", "--config", env.Config).CombinedOutput()
	return string(out), err
}

func statusHandlers(t *testing.T) []string {
	t.Helper()
	st, err := env.Runtime.Status(ctx(t), false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var out []string
	for _, h := range st.RuntimeHandlers {
		if h.Name != "" {
			out = append(out, h.Name)
		}
	}
	return out
}

// debugLines counts crimux's debug-level log lines.
func debugLines(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Dir, "crimux.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "level=DEBUG")
}

// A reload (crimux reload, SIGHUP) adds a handler, which serves at once and
// is in Status, and removes one, whose running pod stays listed, running,
// and can be stopped and removed; the pods of the handler that stays keep
// running; log_level changes at once. A bad configuration changes nothing
// and every error names its key; so does a change that needs a restart.
func TestReload(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	orig, err := os.ReadFile(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(env.Config, orig, 0o644)
		if out, err := crimuxReload(t); err != nil {
			t.Errorf("reload of the original configuration: %v\n%s", err, out)
		}
	})
	runcPod := podConfig(t, "reload-runc")
	runcID, err := env.Runtime.RunPodSandbox(ctx(t), runcPod, "runc")
	if err != nil {
		t.Fatal(err)
	}
	runcCtr := startContainer(t, runcID, runcPod, ctrConfig("c", "sleep", "3600"))
	gvPod := podConfig(t, "reload-gvisor")
	gvID, err := env.Runtime.RunPodSandbox(ctx(t), gvPod, "gvisor")
	if err != nil {
		t.Fatal(err)
	}
	gvCtr := startContainer(t, gvID, gvPod, ctrConfig("c", "sleep", "3600"))
	t.Cleanup(func() {
		for _, id := range []string{runcID, gvID} {
			_ = env.Runtime.StopPodSandbox(ctx(t), id)
			_ = env.Runtime.RemovePodSandbox(ctx(t), id)
		}
	})

	// Remove gvisor, add runc2, log at info.
	cfg := string(orig)
	start := strings.Index(cfg, "[handlers.gvisor]\n")
	end := strings.Index(cfg, "# A runc handler whose pods' network")
	if start < 0 || end < start {
		t.Fatalf("the harness's gvisor handler table not found in\n%s", cfg)
	}
	cfg = cfg[:start] + "[handlers.runc2]\nruntime_path = \"runc\"\n" + cfg[end:]
	cfg = strings.Replace(cfg, `log_level = "debug"`, `log_level = "info"`, 1)
	if err := os.WriteFile(env.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := crimuxReload(t); err != nil || !strings.Contains(out, "runc2") {
		t.Fatalf("crimux reload: %v\n%s", err, out)
	}
	hs := statusHandlers(t)
	if !slices.Contains(hs, "runc2") || slices.Contains(hs, "gvisor") {
		t.Errorf("Status handlers after the reload: %v, want runc2 and no gvisor", hs)
	}
	newPod := podConfig(t, "reload-new")
	newID, err := env.Runtime.RunPodSandbox(ctx(t), newPod, "runc2")
	if err != nil {
		t.Fatalf("a pod of the new handler: %v", err)
	}
	startContainer(t, newID, newPod, ctrConfig("c", "sleep", "3600"))
	if _, err := env.Runtime.RunPodSandbox(ctx(t), podConfig(t, "reload-gone"), "gvisor"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a new pod of the removed handler: %v, want InvalidArgument", err)
	}
	for _, c := range []string{runcCtr, gvCtr} {
		if st := containerState(t, c); st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s is %s after the reload, want running", c[:12], st.State)
		}
	}
	if out, _, err := env.Runtime.ExecSync(ctx(t), runcCtr, []string{"echo", "still"}, 30*time.Second); err != nil || strings.TrimSpace(string(out)) != "still" {
		t.Errorf("exec in the kept handler's container: %q %v", out, err)
	}
	if pods, err := env.Runtime.ListPodSandbox(ctx(t), &runtime.PodSandboxFilter{Id: gvID}); err != nil || len(pods) != 1 || pods[0].RuntimeHandler != "gvisor" {
		t.Errorf("the removed handler's pod is not listed: %v %v", pods, err)
	}
	before := debugLines(t)
	for range 3 {
		_, _ = env.Runtime.Status(ctx(t), false) // logged at debug
	}
	if n := debugLines(t); n != before {
		t.Errorf("%d debug lines logged after log_level became info", n-before)
	}
	// The removed handler's pod is stopped and removed.
	if err := env.Runtime.StopPodSandbox(ctx(t), gvID); err != nil {
		t.Errorf("stop the removed handler's pod: %v", err)
	}
	if err := env.Runtime.RemovePodSandbox(ctx(t), gvID); err != nil {
		t.Errorf("remove the removed handler's pod: %v", err)
	}
	if err := env.Runtime.StopPodSandbox(ctx(t), newID); err != nil {
		t.Error(err)
	}
	_ = env.Runtime.RemovePodSandbox(ctx(t), newID)

	// A bad configuration: nothing changes, every error names its key.
	good := cfg
	bad := strings.Replace(good, "[handlers.runc2]\nruntime_path = \"runc\"\n",
		"[handlers.runc3]\nruntime_path = \"/no/such/runc\"\n[handlers.odd]\ndriver = \"nosuch\"\n[handlers.runc2]\nruntime_path = \"runc\"\nbogus_key = 1\n", 1)
	bad = strings.Replace(bad, "socket = ", "socket = \"/run/elsewhere.sock\"\n# was: ", 1)
	if err := os.WriteFile(env.Config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := crimuxReload(t)
	if err == nil || !strings.Contains(out, "nothing sent") {
		t.Fatalf("crimux reload of a bad configuration: %v\n%s", err, out)
	}
	// crimux itself, signalled directly, refuses it too.
	sent := time.Now()
	if err := syscall.Kill(env.CrimuxPID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var rs struct {
		Time   time.Time
		OK     bool
		Errors []string
	}
	eventually(t, 30*time.Second, "crimux's reload status", func() error {
		b, err := os.ReadFile(filepath.Join(env.Dir, "state", "reload-status.json"))
		if err == nil {
			err = json.Unmarshal(b, &rs)
		}
		if err == nil && rs.Time.Before(sent) {
			err = fmt.Errorf("status of %s, before the signal", rs.Time)
		}
		return err
	})
	if rs.OK {
		t.Error("crimux accepted a bad configuration")
	}
	for _, want := range []string{"handlers.odd.driver", "handlers.runc2.bogus_key"} {
		if !strings.Contains(out, want) || !strings.Contains(strings.Join(rs.Errors, "\n"), want) {
			t.Errorf("errors lack %s: crimux reload said\n%s\ncrimux said %v", want, out, rs.Errors)
		}
	}
	if hs2 := statusHandlers(t); !slices.Equal(hs2, hs) {
		t.Errorf("Status handlers after a refused reload: %v, want %v", hs2, hs)
	}
	// A valid file that changes what needs a restart, or names a missing
	// runtime binary: refused whole, with the keys.
	restart := strings.Replace(good, "socket = ", "socket = \"/run/elsewhere.sock\"\n# was: ", 1)
	restart = strings.Replace(restart, "[handlers.runc2]\n", "[handlers.runc3]\nruntime_path = \"/no/such/runc\"\n[handlers.runc2]\n", 1)
	if err := os.WriteFile(env.Config, []byte(restart), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = crimuxReload(t)
	if err == nil || !strings.Contains(out, "socket: can't change without a restart") {
		t.Errorf("a socket change at a reload: %v\n%s", err, out)
	}
	missing := strings.Replace(good, "[handlers.runc2]\n", "[handlers.runc3]\nruntime_path = \"/no/such/runc\"\n[handlers.runc2]\n", 1)
	if err := os.WriteFile(env.Config, []byte(missing), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = crimuxReload(t)
	if err == nil || !strings.Contains(out, "handlers.runc3.runtime_path") {
		t.Errorf("a missing runtime binary at a reload: %v\n%s", err, out)
	}
	if hs2 := statusHandlers(t); !slices.Equal(hs2, hs) {
		t.Errorf("Status handlers after refused reloads: %v, want %v", hs2, hs)
	}
	b, _ := os.ReadFile(filepath.Join(env.Dir, "crimux.log"))
	if !strings.Contains(string(b), "configuration reload refused") || !strings.Contains(string(b), "handlers.runc3.runtime_path") {
		t.Error("crimux's log does not report the refused reload with its keys")
	}
}
