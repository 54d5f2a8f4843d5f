package containerd

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// A pods dir as the kubelet lays it out, with a tmpfs mounted for the
// memory-backed volume "mem" (root: mounting needs it).
func TestMemoryEmptyDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	pods := t.TempDir()
	vols := filepath.Join(pods, "uid-1", "volumes", emptyDirPlugin)
	for _, d := range []string{"mem", "disk", "Bad.Name", "other-mem"} {
		if err := os.MkdirAll(filepath.Join(vols, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"mem", "Bad.Name"} {
		if err := unix.Mount("tmpfs", filepath.Join(vols, d), "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(filepath.Join(vols, d), unix.MNT_DETACH) })
	}
	// A symlink to a tmpfs elsewhere is not a volume the kubelet mounted.
	elsewhere := t.TempDir()
	if err := unix.Mount("tmpfs", elsewhere, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(elsewhere, unix.MNT_DETACH) })
	if err := os.Symlink(elsewhere, filepath.Join(vols, "link")); err != nil {
		t.Fatal(err)
	}
	// The kubelet gives a volume the pod's fsGroup with the setgid bit.
	if err := os.Chown(filepath.Join(vols, "mem"), 0, 123); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(vols, "mem"), 0o2777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	got := memoryEmptyDirs(pods, "uid-1")
	want := map[string]memoryVolume{"mem": {Path: filepath.Join(vols, "mem"), Mode: 0o2777, UID: 0, GID: 123, Size: 1 << 20}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("memoryEmptyDirs = %v, want %v", got, want)
	}
	// UIDs from the client that are not one plain name find nothing, and
	// a pod without emptyDirs (or not the kubelet's) has none.
	if err := os.MkdirAll(filepath.Join(pods, "uid-1", "volumes", "x", emptyDirPlugin, "mem"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"", "..", "../uid-1", "uid-1/volumes/x", "/uid-1", "uid-2"} {
		if got := memoryEmptyDirs(pods, uid); len(got) != 0 {
			t.Errorf("uid %q: %v", uid, got)
		}
	}

	// On a node whose kubelet dir is itself a tmpfs, a disk-backed
	// emptyDir is a plain dir on that tmpfs: not a mount of its own.
	tmpPods := t.TempDir()
	if err := unix.Mount("tmpfs", tmpPods, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(tmpPods, unix.MNT_DETACH) })
	if err := os.MkdirAll(filepath.Join(tmpPods, "u", "volumes", emptyDirPlugin, "disk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := memoryEmptyDirs(tmpPods, "u"); len(got) != 0 {
		t.Errorf("plain dir on a tmpfs kubelet dir: %v", got)
	}
}

func TestMountHints(t *testing.T) {
	vols := map[string]memoryVolume{
		"mem":   {Path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/mem", Mode: 0o2770, GID: 123, Size: 10240},
		"cache": {Path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/cache", Mode: 0o777},
	}
	sb := sandboxMountHints(vols, map[string]string{mountHintPrefix + "cache.type": "bind"})
	want := map[string]string{mountHintPrefix + "mem.type": "tmpfs", mountHintPrefix + "mem.share": "pod", mountHintPrefix + "mem.options": "rw,mode=2770,uid=0,gid=123,size=10240"}
	if !reflect.DeepEqual(sb, want) {
		t.Errorf("sandbox hints %v, want %v (the pod's own hint for cache kept)", sb, want)
	}
	ctr := containerMountHints(vols, map[int]string{0: vols["mem"].Path, 1: "/data"}, nil)
	if !reflect.DeepEqual(ctr, map[string]string{mountHintPrefix + "mem.type": "tmpfs"}) {
		t.Errorf("container hints %v", ctr)
	}
	if got := containerMountHints(vols, map[int]string{0: "/data"}, nil); len(got) != 0 {
		t.Errorf("a container that mounts no hinted volume: %v", got)
	}
	if got := containerMountHints(vols, map[int]string{0: vols["mem"].Path}, map[string]string{mountHintPrefix + "mem.type": "bind"}); len(got) != 0 {
		t.Errorf("a volume the container's annotations hint: %v", got)
	}
}

// The hints reach the specs of a gVisor handler's pods only.
func TestMountHintsInSpecs(t *testing.T) {
	vols := map[string]memoryVolume{"mem": {Path: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/mem", Mode: 0o777}}
	pause := sandboxSpecInput{Sandbox: testSandbox(nil), Image: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}, Hostname: "h", Node: nodeFacts{oomFloor: -1000, cgroupDriver: "cgroupfs"}, MemoryVolumes: vols}
	for _, gvisor := range []bool{false, true} {
		pause.Policy.memoryEmptyDirs = gvisor
		opts, err := sandboxSpec(pause)
		if err != nil {
			t.Fatal(err)
		}
		s := apply(t, opts)
		if got := s.Annotations[mountHintPrefix+"mem.share"]; (got == "pod") != gvisor {
			t.Errorf("gvisor=%v: sandbox annotations %v", gvisor, s.Annotations)
		}
		in := testInput(func(in *containerSpecInput) {
			in.Policy.memoryEmptyDirs = gvisor
			in.MemoryVolumes = vols
			in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/cache", HostPath: vols["mem"].Path}}
			in.HostPaths = map[int]string{0: vols["mem"].Path}
		})
		copts, err := containerSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		cs := apply(t, copts)
		if got := cs.Annotations[mountHintPrefix+"mem.type"]; (got == "tmpfs") != gvisor {
			t.Errorf("gvisor=%v: container annotations %v", gvisor, cs.Annotations)
		}
	}
}

// A subPath of a hinted volume is refused, naming the volume; one of
// another volume is not.
func TestMemoryVolumeSubPath(t *testing.T) {
	vols := map[string]memoryVolume{"mem": {Path: "/k/pods/u/volumes/kubernetes.io~empty-dir/mem"}}
	err := checkSubPaths("/k/pods", "u", vols, map[int]string{0: "/k/pods/u/volume-subpaths/mem/app/0"})
	if !errors.Is(err, backends.ErrInvalid) || !strings.Contains(err.Error(), `"mem"`) {
		t.Errorf("subPath of a memory volume: %v", err)
	}
	for _, hp := range []string{"/k/pods/u/volume-subpaths/memory/app/0", "/k/pods/u/volumes/kubernetes.io~empty-dir/mem", "/data"} {
		if err := checkSubPaths("/k/pods", "u", vols, map[int]string{0: hp}); err != nil {
			t.Errorf("%s: %v", hp, err)
		}
	}
}
