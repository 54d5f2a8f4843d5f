package test

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A gVisor pod runs on gVisor's kernel: dmesg shows its boot lines and uname
// differs from the host's; a runc pod shares the host kernel. Pods don't see
// each other's localhost.
func TestIsolation(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	a := podConfig(t, "iso-a")
	aID := runPod(t, a)
	srv := startContainer(t, aID, a, ctrConfig("srv", "sh", "-c", "mkdir -p /w && echo local-a > /w/index.html && exec httpd -f -p 127.0.0.1:8080 -h /w"))
	b := podConfig(t, "iso-b")
	bID := runPod(t, b)
	other := startContainer(t, bID, b, ctrConfig("other", "sleep", "3600"))

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	hostRelease := unix.ByteSliceToString(uts.Release[:])
	out, _, err := env.Runtime.ExecSync(ctx(t), srv, []string{"sh", "-c", "uname -r; dmesg 2>&1 | head -5"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	release, dmesg, _ := strings.Cut(string(out), "\n")
	if isGvisor() {
		if release == hostRelease || !strings.Contains(dmesg, "Starting gVisor") {
			t.Errorf("gVisor pod: uname -r %q (host %q), dmesg %q", release, hostRelease, dmesg)
		}
	} else {
		if release != hostRelease || strings.Contains(dmesg, "gVisor") {
			t.Errorf("runc pod: uname -r %q (host %q), dmesg %q", release, hostRelease, dmesg)
		}
	}
	// The same pod's localhost is shared; another pod's isn't.
	eventually(t, 20*time.Second, "server up", func() error {
		o, _, err := env.Runtime.ExecSync(ctx(t), srv, []string{"wget", "-qO-", "http://127.0.0.1:8080/"}, 10*time.Second)
		if err != nil || strings.TrimSpace(string(o)) != "local-a" {
			return os.ErrNotExist
		}
		return nil
	})
	resp, err := rawExecSync(t, other, []string{"timeout", "3", "wget", "-qO-", "http://127.0.0.1:8080/"}, 10)
	if err != nil || resp.ExitCode == 0 || resp.ExitCode >= 128 {
		t.Errorf("pod b's attempt on its own localhost:8080 should be refused (exit 1): %v %v", resp, err)
	}
}
