package skiplist

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "skips.txt")
	body := "# comment\n\nall | PrivilegedPod | no dummy links\ngvisor,fwd | HostPath | privileged containers\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(For(all, "runc")) != 1 || len(For(all, "gvisor")) != 2 || len(For(all, "fwd")) != 2 {
		t.Errorf("per handler: runc %v gvisor %v fwd %v", For(all, "runc"), For(all, "gvisor"), For(all, "fwd"))
	}
	reason := ""
	for _, e := range For(all, "gvisor") {
		if e.Match("[sig-storage] HostPath should support r/w") {
			reason = e.Reason
		}
	}
	if reason != "privileged containers" {
		t.Errorf("reason %q", reason)
	}
	for _, bad := range []string{"gvisor | HostPath\n", "all | ( | why\n", "all | x | \n"} {
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
