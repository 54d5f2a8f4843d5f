package harness

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A run's owner is live while its process runs, whatever its command (the
// sweep once killed the services of a live make node-e2e, whose command is
// not a test binary), and not once it is gone or its pid was reused.
func TestOwnerLiveness(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id := ownerID(cmd.Process.Pid)
	if !isLiveOwner(id) {
		t.Errorf("a running owner (%q) is not live", id)
	}
	pid := strings.Fields(id)[0]
	for _, stale := range []string{pid, pid + " 1", "", "x y"} {
		if isLiveOwner(stale) {
			t.Errorf("owner %q taken for live", stale)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if isLiveOwner(id) {
		t.Errorf("an owner that exited is live")
	}
}

// A SIGSTOP returns once the process is stopped, not when it is queued.
func TestSignalProcessWaitsForStop(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if allThreadsStopped(cmd.Process.Pid) {
		t.Fatal("a running process reads as stopped")
	}
	if err := signalProcess(cmd.Process, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if !allThreadsStopped(cmd.Process.Pid) {
		t.Fatal("SIGSTOP returned before the process stopped")
	}
	if err := signalProcess(cmd.Process, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}
