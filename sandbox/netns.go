package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// NewNetNS creates a network namespace with its loopback up and pins it with a
// bind mount at dir/name, which it returns.
func NewNetNS(dir, name string) (string, error) {
	var p string
	err := awayFromHome(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		return nil
	}, func() error {
		var err error
		if p, err = pinNS(dir, name, "/proc/thread-self/ns/net"); err != nil {
			return err
		}
		if err = loopbackUp(); err != nil {
			_ = RemoveNetNS(p)
			p = ""
		}
		return err
	})
	return p, err
}

// awayFromHome runs enter (which moves its thread to another netns, or
// fails having moved nothing) and then f, on a thread of its own, and
// brings the thread back to the netns it came from: crimux's own, which
// no thread of Go's pool leaves for longer than this. The thread is then
// reused (a stats list reads a netns per pod: a thread made and ended for
// each read costs more than the read), and no thread of crimux holds a
// pod's netns. One that can't come back stays locked, and the runtime
// ends it with its goroutine — all but the main thread, which it parks
// for good: one more reason to always come back.
func awayFromHome(enter, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer home.Close()
		if err := enter(); err != nil {
			goruntime.UnlockOSThread() // still at home
			errc <- err
			return
		}
		ferr := f()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			goruntime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// RemoveNetNS unmounts and removes a namespace made by NewNetNS or NewUserNS
// (network or user); a missing one is fine.
func RemoveNetNS(p string) error {
	if p == "" {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %q: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %q: %w", p, err)
	}
	return nil
}

// InNetNS runs f on a thread that has entered the namespace at p; the
// thread goes back to crimux's netns afterwards (awayFromHome).
func InNetNS(p string, f func() error) error {
	ns, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", p, err)
	}
	defer ns.Close()
	return awayFromHome(func() error {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter netns %q: %w", p, err)
		}
		return nil
	}, f)
}

// HolderEnv, set in its environment, makes a crimux process only hold the
// namespaces it was started in until its stdin closes (see NewUserNS).
const HolderEnv = "_CRIMUX_NS_HOLDER"

// HoldNamespaces is what a crimux process started by NewUserNS does.
func HoldNamespaces() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// NewUserNS creates a user namespace with the given mappings and pins it with
// a bind mount at usernsDir/name. With netnsDir it also creates a network
// namespace owned by that user namespace (loopback up), pinned at
// netnsDir/name: a pod whose containers run in the user namespace can then
// mount sysfs for its own network, which it can't for a network namespace
// the node's user namespace owns. Go can't unshare a user namespace in a
// threaded process, so a child crimux process (HolderEnv) is started in the
// new namespaces and ends once they are pinned.
func NewUserNS(usernsDir, netnsDir, name string, uids, gids []syscall.SysProcIDMap) (userns, netns string, err error) {
	flags := uintptr(unix.CLONE_NEWUSER)
	if netnsDir != "" {
		flags |= unix.CLONE_NEWNET
	}
	// Pdeathsig follows the forking thread: keep this one (a goroutine that
	// exits locked, as NewNetNS's do, ends its thread) until the holder is done.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{HolderEnv + "=1"}
	hold, err := cmd.StdinPipe()
	if err != nil {
		return "", "", err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: uids,
		GidMappings: gids,
		// The pod's processes may set their supplementary groups.
		GidMappingsEnableSetgroups: true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("start a process in a new user namespace: %w", err)
	}
	defer func() {
		_ = hold.Close()
		if err != nil {
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	}()
	defer func() {
		if err != nil {
			_ = RemoveNetNS(netns)
			_ = RemoveNetNS(userns)
		}
	}()
	if userns, err = pinNS(usernsDir, name, fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)); err != nil {
		return "", "", err
	}
	if netnsDir == "" {
		return userns, "", nil
	}
	if netns, err = pinNS(netnsDir, name, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)); err != nil {
		return userns, "", err
	}
	if err = InNetNS(netns, loopbackUp); err != nil {
		return userns, netns, err
	}
	return userns, netns, nil
}

// pinNS bind-mounts the namespace file src at dir/name (a new file there).
func pinNS(dir, name, src string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create namespace dir %q: %w", dir, err)
	}
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create namespace file %q: %w", p, err)
	}
	f.Close()
	if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(p)
		return "", fmt.Errorf("bind-mount %s at %q: %w", src, p, err)
	}
	return p, nil
}
