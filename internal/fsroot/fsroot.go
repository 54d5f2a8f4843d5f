// Package fsroot opens the paths a CRI client names inside the directory
// they belong to. Each path is resolved by the kernel one component at a
// time (openat2 with RESOLVE_IN_ROOT or RESOLVE_BENEATH), never by its text,
// and what crimux then uses is the opened object itself, so nothing can swap
// a component between the check and the use. Kernels without openat2 (before
// 5.6) get the same semantics from a walk in user space.
package fsroot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks is how many symlinks one resolution may follow, as Linux allows.
const maxSymlinks = 40

// ErrEscape is returned for a path whose text leaves the directory it
// belongs to (absolute, or climbing above it with "..").
var ErrEscape = errors.New("path leaves its directory")

// OpenInRoot opens sub inside root as if root were "/": absolute and
// relative symlinks and ".." all resolve within root, at any depth, and the
// walk never crosses onto another mount. It returns an O_PATH file of the
// object sub names. Errors wrap the unix errno (ENOENT for a missing path).
func OpenInRoot(root, sub string) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: root, Err: err}
	}
	defer unix.Close(rfd)
	fd, err := openat2Retry(rfd, sub, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = walkInRoot(rfd, sub)
	}
	if err != nil {
		return nil, &os.PathError{Op: "resolve in " + root, Path: sub, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, sub)), nil
}

// openat2Retry calls openat2, again where the kernel asks for it (EAGAIN:
// a rename raced a ".." walk) a few times.
func openat2Retry(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, p, how)
		if err == unix.EAGAIN && i < 32 {
			continue
		}
		return fd, err
	}
}

// walkInRoot is RESOLVE_IN_ROOT in user space: the path is walked one
// component at a time with O_NOFOLLOW, symlinks are read and spliced into
// what is left to walk (an absolute target restarts at root), and ".." never
// climbs above root. Crossing onto another mount is refused (EXDEV).
func walkInRoot(rfd int, sub string) (int, error) {
	var rst unix.Stat_t
	if err := unix.Fstat(rfd, &rst); err != nil {
		return -1, err
	}
	// stack holds the open directories from root (not included) down.
	var stack []int
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	cur := func() int {
		if len(stack) == 0 {
			return rfd
		}
		return stack[len(stack)-1]
	}
	if sub == "" {
		return -1, unix.ENOENT
	}
	rest := sub
	links := 0
	for {
		rest = strings.TrimLeft(rest, "/")
		if rest == "" {
			return unix.FcntlInt(uintptr(cur()), unix.F_DUPFD_CLOEXEC, 0)
		}
		comp, tail, slash := strings.Cut(rest, "/")
		rest = tail
		switch comp {
		case ".":
			continue
		case "..":
			if n := len(stack); n > 0 {
				unix.Close(stack[n-1])
				stack = stack[:n-1]
			}
			continue
		}
		fd, err := unix.Openat(cur(), comp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Dev != rst.Dev {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			links++
			if links > maxSymlinks {
				unix.Close(fd)
				return -1, unix.ELOOP
			}
			target, err := readlinkFD(fd)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack {
					unix.Close(d)
				}
				stack = stack[:0]
			}
			if slash {
				target += "/" + rest
			}
			rest = target
		case unix.S_IFDIR:
			stack = append(stack, fd)
		default:
			if slash {
				// More to walk (or a trailing slash) after a non-directory.
				unix.Close(fd)
				return -1, unix.ENOTDIR
			}
			return fd, nil
		}
	}
}

func readlinkFD(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// CheckLocal refuses a client path that, by its text, is absolute, empty or
// climbs above the directory it is relative to. A path that passes may still
// hold symlinks: resolve it with OpenInRoot or OpenBeneath.
func CheckLocal(p string) error {
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: %q holds a NUL byte", ErrEscape, p)
	}
	if !filepath.IsLocal(p) {
		return fmt.Errorf("%w: %q is not a relative path that stays inside it", ErrEscape, p)
	}
	return nil
}

// OpenBeneath opens rel (a relative path, see CheckLocal) beneath dir with
// flags and mode, refusing every symlink on the way and at the end (ELOOP),
// so a link planted under dir never redirects the open. With create, missing
// parent directories are made (mode 0755), also without following links.
func OpenBeneath(dir, rel string, flags int, mode uint32, create bool) (*os.File, error) {
	if err := CheckLocal(rel); err != nil {
		return nil, err
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	if create {
		if parent := filepath.Dir(filepath.Clean(rel)); parent != "." {
			if err := mkdirAllBeneath(dfd, parent); err != nil {
				return nil, &os.PathError{Op: "mkdir beneath " + dir, Path: parent, Err: err}
			}
		}
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode) // openat2 refuses a mode without O_CREAT
	}
	fd, err := openat2Retry(dfd, rel, how)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = walkBeneath(dfd, rel, flags, mode)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open beneath " + dir, Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// mkdirAllBeneath makes each directory of rel under dfd that is missing,
// refusing symlinks and non-directories on the way.
func mkdirAllBeneath(dfd int, rel string) error {
	cur := dfd
	for _, comp := range strings.Split(filepath.Clean(rel), "/") {
		if comp == "." || comp == "" {
			continue
		}
		if comp == ".." {
			return unix.EXDEV
		}
		err := unix.Mkdirat(cur, comp, 0o755)
		if err != nil && err != unix.EEXIST {
			if cur != dfd {
				unix.Close(cur)
			}
			return err
		}
		next, err := unix.Openat(cur, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if cur != dfd {
			unix.Close(cur)
		}
		if err != nil {
			if err == unix.ENOTDIR {
				// A symlink (O_NOFOLLOW) or a file where a directory belongs.
				return unix.ELOOP
			}
			return err
		}
		cur = next
	}
	if cur != dfd {
		unix.Close(cur)
	}
	return nil
}

// walkBeneath is OpenBeneath's resolution without openat2: every component
// is opened with O_NOFOLLOW, ".." is refused.
func walkBeneath(dfd int, rel string, flags int, mode uint32) (int, error) {
	parts := strings.Split(filepath.Clean(rel), "/")
	cur := dfd
	closeCur := func() {
		if cur != dfd {
			unix.Close(cur)
		}
	}
	defer closeCur()
	for _, comp := range parts[:len(parts)-1] {
		if comp == ".." {
			return -1, unix.EXDEV
		}
		next, err := unix.Openat(cur, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if err == unix.ENOTDIR {
				return -1, unix.ELOOP
			}
			return -1, err
		}
		closeCur()
		cur = next
	}
	last := parts[len(parts)-1]
	if last == ".." {
		return -1, unix.EXDEV
	}
	return unix.Openat(cur, last, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
}

// BindFD bind-mounts the object f was opened on (an O_PATH file from
// OpenInRoot) at target, which must exist and be of the same kind (a
// directory for a directory, a file for anything else); with readonly the
// new mount is made read-only. The kernel mounts the opened object, not
// whatever a path to it names now.
func BindFD(f *os.File, target string, readonly bool) error {
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind-mount " + f.Name() + " at", Path: target, Err: err}
	}
	if readonly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return &os.PathError{Op: "remount read-only", Path: target, Err: err}
		}
	}
	return nil
}

// IsDir reports whether an O_PATH file is a directory.
func IsDir(f *os.File) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}
