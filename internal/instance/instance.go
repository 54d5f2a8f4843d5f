// Package instance makes sure one crimux owns its directories and socket:
// a second crimux on the same root_dir, state_dir or socket refuses to start
// instead of sweeping or unlinking what the first one serves. Each root_dir
// has an instance ID, which crimux puts on what it creates in containerd so
// that it only ever sweeps its own.
package instance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Instance holds the locks of a running crimux.
type Instance struct {
	// ID names this crimux's objects in containerd; it lives in root_dir.
	ID    string
	locks []*os.File
}

// Acquire locks rootDir and stateDir (a lock file in each, held while the
// process lives) and reads or makes the instance ID. A directory another
// live crimux holds is an error naming it and that process.
func Acquire(rootDir, stateDir string) (*Instance, error) {
	in := &Instance{}
	for _, d := range []struct{ key, dir string }{{"root_dir", rootDir}, {"state_dir", stateDir}} {
		f, err := lock(d.dir)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("%s: %w", d.key, err)
		}
		in.locks = append(in.locks, f)
	}
	id, err := readOrMakeID(filepath.Join(rootDir, "instance-id"))
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("root_dir: %w", err)
	}
	in.ID = id
	return in, nil
}

// Close releases the locks.
func (in *Instance) Close() {
	for _, f := range in.locks {
		f.Close()
	}
	in.locks = nil
}

func lock(dir string) (*os.File, error) {
	p := filepath.Join(dir, "crimux.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			return nil, fmt.Errorf("%q is in use by another crimux (pid %s); one crimux per directory", dir, holder)
		}
		return nil, fmt.Errorf("lock %q: %w", p, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func readOrMakeID(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 32 {
			if _, err := hex.DecodeString(id); err == nil {
				return id, nil
			}
		}
		return "", fmt.Errorf("instance ID file %q holds %q, not 32 hex digits; remove it only if no pods of this crimux remain", p, id)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read instance ID: %w", err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write instance ID: %w", err)
	}
	if f, err := os.Open(tmp); err == nil {
		_ = f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("write instance ID: %w", err)
	}
	return id, nil
}

// ErrSocketInUse is returned by ProbeSocket for a socket something answers on.
var ErrSocketInUse = errors.New("socket is being served")

// ProbeSocket checks that nothing serves the unix socket at p: a missing
// path or a stale socket (connection refused) is fine and a stale one is
// removed; one that accepts a connection is ErrSocketInUse; a path that is
// not a socket is an error too (crimux never unlinks a file it did not make).
func ProbeSocket(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %q: %w", p, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket %q: the path exists and is not a socket", p)
	}
	conn, err := net.DialTimeout("unix", p, 2*time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: %q accepts connections (another crimux or runtime serves it); stop it first", ErrSocketInUse, p)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("socket %q: probe: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %q: %w", p, err)
	}
	return nil
}

// Running returns the pid of the crimux that holds stateDir, or an error
// when none does.
func Running(stateDir string) (int, error) {
	p := filepath.Join(stateDir, "crimux.lock")
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("no crimux has run on state_dir %q: %w", stateDir, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, fmt.Errorf("no crimux is running on state_dir %q (its lock is free)", stateDir)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("lock file %q names no pid (%q)", p, b)
	}
	return pid, nil
}
