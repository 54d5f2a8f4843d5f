package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/fsroot"
)

// gVisor mount hints for memory-backed emptyDir volumes.
//
// The kubelet gives a pod's emptyDir volume with medium Memory as a tmpfs
// on the node, bind-mounted into each container that uses it. Inside a
// gVisor sandbox a bind mount of a host directory is served through the
// gofer: the pod sees a 9p-like filesystem, not tmpfs, and every file
// operation leaves the sandbox. gVisor's mount hints (pod annotations
// dev.gvisor.spec.mount.<volume>.{type,share,options}) let its shim mount
// the volume as one tmpfs inside the sandbox, shared by the pod's
// containers: what the pod asked for, and fast. The kubelet sends no such
// annotations (GKE adds them with a webhook), so crimux adds them for its
// runsc handlers: on the pause container's spec for each memory-backed
// emptyDir of the pod, and on a container's spec for each such volume it
// mounts. The shim fills in the source and keeps a volume that already
// holds files (or that the pod marks dev.gvisor.empty-dir.<volume>.force-shared)
// a bind mount.

// kubeletPodsDir is where the kubelet keeps its pods' volumes. gVisor's shim
// looks a hinted volume's source up there itself, so it is the only place a
// hint can name; a kubelet with another root dir gets no hints.
var kubeletPodsDir = "/var/lib/kubelet/pods"

const (
	emptyDirPlugin  = "kubernetes.io~empty-dir"
	mountHintPrefix = "dev.gvisor.spec.mount."
)

var (
	// A pod UID names one directory: a UUID in practice, never a path.
	podUIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,127}$`)
	// Volume names are DNS labels; a hint's key has no room for a dot.
	volumeNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// memoryVolume is a memory-backed emptyDir on the node: its path and its
// root's mode and owner (the kubelet gives it the pod's fsGroup, with the
// setgid bit, before the pod starts).
type memoryVolume struct {
	Path     string
	Mode     uint32 // permission bits with setuid, setgid and sticky
	UID, GID uint32
	Size     uint64 // the node tmpfs's size (the volume's sizeLimit, or the kubelet's default)
}

// memoryEmptyDirs returns the pod's memory-backed emptyDir volumes by name:
// the entries of the pod's empty-dir volume dir that are tmpfs mounts of
// their own. The pod's UID comes from the client: it is checked to be one
// plain name, and the dir is resolved inside podsDir.
func memoryEmptyDirs(podsDir, uid string) map[string]memoryVolume {
	if !podUIDPattern.MatchString(uid) {
		return nil
	}
	rel := filepath.Join(uid, "volumes", emptyDirPlugin)
	pf, err := fsroot.OpenInRoot(podsDir, rel)
	if err != nil {
		return nil // no such pod dir: not a kubelet pod, or no emptyDir
	}
	defer pf.Close()
	fd, err := unix.Openat(int(pf.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	dir := os.NewFile(uintptr(fd), filepath.Join(podsDir, rel))
	defer dir.Close()
	var parent unix.Stat_t
	if unix.Fstat(fd, &parent) != nil {
		return nil
	}
	names, _ := dir.Readdirnames(-1)
	out := map[string]memoryVolume{}
	for _, n := range names {
		if !volumeNamePattern.MatchString(n) {
			continue
		}
		if st, fs, ok := tmpfsMount(fd, n, parent.Dev); ok {
			out[n] = memoryVolume{Path: filepath.Join(podsDir, rel, n), Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
				Size: fs.Blocks * uint64(fs.Bsize)}
		}
	}
	return out
}

// tmpfsMount stats name in dirfd and reports whether it is a directory
// that is a tmpfs mounted there (its device differs from the dir's): a
// memory-backed emptyDir, not a disk-backed one on a node whose kubelet dir
// is tmpfs.
func tmpfsMount(dirfd int, name string, parentDev uint64) (unix.Stat_t, unix.Statfs_t, bool) {
	var st unix.Stat_t
	var fs unix.Statfs_t
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fs, false
	}
	defer unix.Close(fd)
	if unix.Fstat(fd, &st) != nil || unix.Fstatfs(fd, &fs) != nil {
		return st, fs, false
	}
	return st, fs, fs.Type == unix.TMPFS_MAGIC && st.Dev != parentDev
}

// sandboxMountHints are the pause container's hints: each memory-backed
// emptyDir a tmpfs shared in the pod whose root has the node directory's
// mode and owner (so fsGroup's setgid directory works inside the sandbox
// as on the node) and its size (the volume's sizeLimit), unless the pod's
// own annotations (passed on by pod_annotations) hint that volume already.
func sandboxMountHints(vols map[string]memoryVolume, podAnnotations map[string]string) map[string]string {
	out := map[string]string{}
	for v, mv := range vols {
		if _, ok := podAnnotations[mountHintPrefix+v+".type"]; ok {
			continue
		}
		out[mountHintPrefix+v+".type"] = "tmpfs"
		out[mountHintPrefix+v+".share"] = "pod"
		opts := fmt.Sprintf("rw,mode=%04o,uid=%d,gid=%d", mv.Mode, mv.UID, mv.GID)
		if mv.Size > 0 {
			opts += fmt.Sprintf(",size=%d", mv.Size)
		}
		out[mountHintPrefix+v+".options"] = opts
	}
	return out
}

// containerMountHints are a container's hints: the type of each hinted
// volume it mounts (by resolved host path), which tells the shim to mount
// the sandbox's tmpfs there instead of binding the node's directory; none
// for a volume the container's own annotations hint.
func containerMountHints(vols map[string]memoryVolume, hostPaths map[int]string, annotations map[string]string) map[string]string {
	byPath := map[string]string{}
	for v, mv := range vols {
		byPath[mv.Path] = v
	}
	out := map[string]string{}
	for _, hp := range hostPaths {
		if v, ok := byPath[hp]; ok {
			if _, hinted := annotations[mountHintPrefix+v+".type"]; hinted {
				continue
			}
			out[mountHintPrefix+v+".type"] = "tmpfs"
		}
	}
	return out
}

// checkSubPaths refuses a container that mounts a subPath of a hinted
// volume: the kubelet binds the sub-directory of the node's directory, but
// the pod's files live in the sandbox's tmpfs, so the container would see
// other files than its pod's containers (gVisor's hints can't name a part
// of a mount). InvalidArgument, naming the volume.
func checkSubPaths(podsDir, uid string, vols map[string]memoryVolume, hostPaths map[int]string) error {
	for v := range vols {
		prefix := filepath.Join(podsDir, uid, "volume-subpaths", v) + "/"
		for _, hp := range hostPaths {
			if strings.HasPrefix(hp, prefix) {
				return fmt.Errorf("%w: subPath of the memory-backed emptyDir volume %q: on this gVisor handler the volume is one tmpfs inside the pod's sandbox, and a subPath of it can't be mounted (mount the whole volume, or give the volume a disk medium)", backends.ErrInvalid, v)
			}
		}
	}
	return nil
}
