package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crimux/crimux/test/harness"
)

// A kubelet root as a kubelet leaves it: bind-mounted onto itself, with a
// volume's tmpfs below. Both mounts go and so does the dir (the self-bind
// once stayed behind, and the dir with it).
func TestReleaseRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts: needs root")
	}
	root := filepath.Join(t.TempDir(), "kubelet")
	vol := filepath.Join(root, "pods", "u", "volumes", "kubernetes.io~empty-dir", "v")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(vol, unix.MNT_DETACH)
		_ = unix.Unmount(root, unix.MNT_DETACH)
	})
	// A sibling whose name starts with the root's is not the kubelet's.
	sibling := root + "-other"
	if err := os.MkdirAll(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sibling, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sibling, unix.MNT_DETACH) })

	releaseRoot(root)
	if ms := harness.MountsUnder(root + "/"); len(ms) != 0 {
		t.Errorf("mounts left under the root: %v", ms)
	}
	for _, m := range harness.MountsUnder(root) {
		if m == root {
			t.Errorf("the root's own bind mount is left")
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("the root is left: %v", err)
	}
	if len(harness.MountsUnder(sibling)) != 1 {
		t.Errorf("the sibling's mount was taken too")
	}
}
