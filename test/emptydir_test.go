package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod's memory-backed emptyDir volume, laid out as the kubelet does it
// (a tmpfs at /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>,
// bind-mounted into the containers that use it), next to a disk-backed one.
// Both containers see the memory one as tmpfs and share its files, and a
// new file gets the volume's setgid group (the pod's fsGroup); its size is
// the node tmpfs's (the volume's sizeLimit). With
// gVisor it is one tmpfs inside the sandbox (mount hints): what the pod
// writes there never reaches the node's directory. With runc it is the
// node's tmpfs itself.
func TestMemoryEmptyDir(t *testing.T) {
	pullBusybox(t)
	pod := podConfig(t, "memvol")
	uid := pod.Metadata.Uid
	const kubelet = "/var/lib/kubelet"
	madeKubelet := false
	if _, err := os.Stat(kubelet); os.IsNotExist(err) {
		madeKubelet = true
	}
	podDir := filepath.Join(kubelet, "pods", uid)
	vols := filepath.Join(podDir, "volumes", "kubernetes.io~empty-dir")
	mem, disk := filepath.Join(vols, "cache"), filepath.Join(vols, "scratch")
	for _, d := range []string{mem, disk} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", mem, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	// As the kubelet sets up a volume of a pod with fsGroup 123: new files
	// in it get that group.
	if err := os.Chown(mem, 0, 123); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(mem, 0o777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(mem, unix.MNT_DETACH)
		_ = os.RemoveAll(podDir)
		_ = os.Remove(filepath.Join(kubelet, "pods"))
		if madeKubelet {
			_ = os.RemoveAll(kubelet)
		}
	})
	podID := runPod(t, pod)
	mounts := []*runtime.Mount{{ContainerPath: "/cache", HostPath: mem}, {ContainerPath: "/scratch", HostPath: disk}}
	w := ctrConfig("writer", "sh", "-c", "echo from-writer > /cache/f && echo on-disk > /scratch/g && exec sleep 3600")
	w.Mounts = mounts
	r := ctrConfig("reader", "sleep", "3600")
	r.Mounts = mounts
	startContainer(t, podID, pod, w)
	rid := startContainer(t, podID, pod, r)

	eventually(t, 30*time.Second, "the reader sees the writer's file", func() error {
		out, _, err := env.Runtime.ExecSync(ctx(t), rid, []string{"cat", "/cache/f"}, 10*time.Second)
		if err != nil || strings.TrimSpace(string(out)) != "from-writer" {
			return fmt.Errorf("cat /cache/f: %q %v", out, err)
		}
		return nil
	})
	out, _, err := env.Runtime.ExecSync(ctx(t), rid, []string{"stat", "-f", "-c", "%T", "/cache"}, 10*time.Second)
	if err != nil || strings.TrimSpace(string(out)) != "tmpfs" {
		t.Errorf("/cache's filesystem: %q %v, want tmpfs", out, err)
	}
	gout, _, err := env.Runtime.ExecSync(ctx(t), rid, []string{"stat", "-c", "%g %a", "/cache/f", "/cache"}, 10*time.Second)
	if err != nil || strings.Fields(string(gout))[0] != "123" || !strings.Contains(string(gout), "2777") {
		t.Errorf("group of a new file and the volume's mode: %q %v, want 123 (the volume's setgid group) and 2777", gout, err)
	}
	// The volume's size (its sizeLimit) is the node tmpfs's: 16 MiB.
	sout, _, err := env.Runtime.ExecSync(ctx(t), rid, []string{"stat", "-f", "-c", "%b %S", "/cache"}, 10*time.Second)
	var blocks, bsize int64
	if _, serr := fmt.Sscan(string(sout), &blocks, &bsize); err != nil || serr != nil || blocks*bsize != 16<<20 {
		t.Errorf("size of /cache: %q (%v), want 16 MiB", sout, err)
	}
	dout, _, err := env.Runtime.ExecSync(ctx(t), rid, []string{"stat", "-f", "-c", "%T", "/scratch"}, 10*time.Second)
	if err != nil || strings.TrimSpace(string(dout)) == "tmpfs" {
		t.Errorf("/scratch (disk-backed) filesystem: %q %v, want the node's disk", dout, err)
	}
	// The disk-backed volume stays the node's directory either way.
	if b, err := os.ReadFile(filepath.Join(disk, "g")); err != nil || strings.TrimSpace(string(b)) != "on-disk" {
		t.Errorf("disk-backed volume on the node: %q %v", b, err)
	}
	_, err = os.Stat(filepath.Join(mem, "f"))
	if env.Handler == "gvisor" {
		if err == nil {
			t.Errorf("gVisor: the pod's tmpfs file reached the node's directory %s: the volume is bind-mounted, not sandbox-internal", mem)
		}
	} else if err != nil {
		t.Errorf("runc: the node's tmpfs should hold the pod's file: %v", err)
	}
}
