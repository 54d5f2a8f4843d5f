package fsroot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree makes a directory holding root/ and, beside it, outside/ with a
// secret: what no resolution inside root may ever reach.
func tree(t testing.TB) (base, root string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "root")
	must(t, os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "outside", "secret"), []byte("secret"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "data", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "data", "file"), []byte("inside"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "outside"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "outside", "decoy"), []byte("decoy"), 0o644))
	return base, root
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, p string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.Symlink(target, p))
}

// where returns the path an fd names, through /proc.
func where(t testing.TB, fd uintptr) string {
	t.Helper()
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	must(t, err)
	return p
}

func TestOpenInRoot(t *testing.T) {
	base, root := tree(t)
	symlink(t, "/", filepath.Join(root, "escape"))
	symlink(t, "../../../../../../..", filepath.Join(root, "climb"))
	symlink(t, filepath.Join(base, "outside"), filepath.Join(root, "hostabs"))
	symlink(t, "/outside", filepath.Join(root, "abs-outside"))
	symlink(t, "../outside/secret", filepath.Join(root, "data", "rel-secret"))
	symlink(t, "/data", filepath.Join(root, "mid"))
	symlink(t, "sub/../../../..", filepath.Join(root, "data", "late"))
	symlink(t, "loop2", filepath.Join(root, "loop1"))
	symlink(t, "loop1", filepath.Join(root, "loop2"))
	symlink(t, "/data/file", filepath.Join(root, "filelink"))
	for _, tc := range []struct {
		desc, sub string
		want      string // relative to root; "" for an error
		errno     error
	}{
		{desc: "plain dir", sub: "data", want: "data"},
		{desc: "plain file", sub: "data/file", want: "data/file"},
		{desc: "absolute symlink to / stays at root", sub: "escape", want: "."},
		{desc: "relative symlink climbing stays at root", sub: "climb", want: "."},
		{desc: "dot-dot text is clamped at root", sub: "../../..", want: "."},
		{desc: "absolute symlink to a host dir resolves in root", sub: "hostabs", errno: unix.ENOENT},
		{desc: "absolute symlink to a dir the root has too", sub: "abs-outside", want: "outside"},
		{desc: "host secret through absolute link is the image's", sub: "hostabs/secret", errno: unix.ENOENT},
		{desc: "host secret through relative link", sub: "data/rel-secret", errno: unix.ENOENT},
		{desc: "mid-path symlink", sub: "mid/file", want: "data/file"},
		{desc: "escape only after a link is followed", sub: "data/late/outside/secret", errno: unix.ENOENT},
		{desc: "escape only after a link is followed, decoy inside", sub: "data/late/outside/decoy", want: "outside/decoy"},
		{desc: "symlink to a file", sub: "filelink", want: "data/file"},
		{desc: "missing", sub: "no/such", errno: unix.ENOENT},
		{desc: "through a file", sub: "data/file/x", errno: unix.ENOTDIR},
		{desc: "file with trailing slash", sub: "data/file/", errno: unix.ENOTDIR},
		{desc: "symlink loop", sub: "loop1", errno: unix.ELOOP},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			check := func(name string, open func() (int, error)) {
				fd, err := open()
				if tc.want == "" {
					if err == nil {
						unix.Close(fd)
						t.Fatalf("%s: %q resolved, want %v", name, tc.sub, tc.errno)
					}
					if !errors.Is(err, tc.errno) {
						t.Fatalf("%s: %q: %v, want %v", name, tc.sub, err, tc.errno)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: %q: %v", name, tc.sub, err)
				}
				defer unix.Close(fd)
				if got, want := where(t, uintptr(fd)), filepath.Join(root, tc.want); got != want {
					t.Fatalf("%s: %q resolved to %s, want %s", name, tc.sub, got, want)
				}
			}
			check("openat2", func() (int, error) {
				f, err := OpenInRoot(root, tc.sub)
				if err != nil {
					return -1, err
				}
				fd, err := unix.Dup(int(f.Fd()))
				f.Close()
				return fd, err
			})
			check("walk", func() (int, error) {
				rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				must(t, err)
				defer unix.Close(rfd)
				return walkInRoot(rfd, tc.sub)
			})
		})
	}
}

func TestOpenBeneath(t *testing.T) {
	base, root := tree(t)
	symlink(t, filepath.Join(base, "outside"), filepath.Join(root, "link-dir"))
	symlink(t, filepath.Join(base, "outside", "secret"), filepath.Join(root, "data", "0.log"))
	for _, tc := range []struct {
		desc, rel string
		ok        bool
	}{
		{desc: "new file in a new dir", rel: "ctr/0.log", ok: true},
		{desc: "existing dir", rel: "data/new.log", ok: true},
		{desc: "symlinked dir", rel: "link-dir/x.log"},
		{desc: "symlinked file", rel: "data/0.log"},
		{desc: "climbing", rel: "../outside/secret"},
		{desc: "absolute", rel: "/etc/passwd"},
		{desc: "climbing after a dir", rel: "data/../../outside/secret"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			for _, impl := range []string{"openat2", "walk"} {
				var f *os.File
				var err error
				if impl == "openat2" {
					f, err = OpenBeneath(root, tc.rel, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, 0o640, true)
				} else {
					if err = CheckLocal(tc.rel); err == nil {
						var dfd, fd int
						dfd, err = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
						must(t, err)
						if err = mkdirAllBeneath(dfd, filepath.Dir(tc.rel)); err == nil {
							fd, err = walkBeneath(dfd, tc.rel, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, 0o640)
							if err == nil {
								f = os.NewFile(uintptr(fd), tc.rel)
							}
						}
						unix.Close(dfd)
					}
				}
				if tc.ok != (err == nil) {
					t.Fatalf("%s: %q: err %v, want ok=%v", impl, tc.rel, err, tc.ok)
				}
				if f != nil {
					if got := where(t, f.Fd()); !strings.HasPrefix(got, root+"/") {
						t.Fatalf("%s: opened %s, outside %s", impl, got, root)
					}
					f.Close()
				}
			}
			b, _ := os.ReadFile(filepath.Join(base, "outside", "secret"))
			if string(b) != "secret" {
				t.Fatalf("the file outside was changed: %q", b)
			}
		})
	}
}

func TestBindFD(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	_, root := tree(t)
	symlink(t, "/data", filepath.Join(root, "mid"))
	f, err := OpenInRoot(root, "mid")
	must(t, err)
	defer f.Close()
	target := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(target, 0o755))
	must(t, BindFD(f, target, true))
	defer unix.Unmount(target, unix.MNT_DETACH)
	if b, err := os.ReadFile(filepath.Join(target, "file")); err != nil || string(b) != "inside" {
		t.Fatalf("read through the bind: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a read-only bind: %v, want EROFS", err)
	}
}

// FuzzOpenInRoot builds a tree of directories, files and symlinks (any
// target, absolute, relative or climbing) from the fuzzer's text and
// resolves a fuzzed path in it: the result never leaves the root, and the
// kernel's openat2 and the user-space walk agree.
func FuzzOpenInRoot(f *testing.F) {
	f.Add("l escape /\nd a/b\nl a/b/up ../../..\n", "escape/outside/secret")
	f.Add("l x ../outside\nl y /x/secret\n", "y")
	f.Add("d d\nl d/l ../../../outside/secret\n", "d/l")
	f.Add("l m /data\nl data/late sub/../../..\n", "m/late/outside/decoy")
	f.Add("f data/file2\nl link data/file2\n", "link/")
	f.Add("l a b\nl b a\n", "a")
	f.Fuzz(func(t *testing.T, spec, sub string) {
		base, root := tree(t)
		for _, line := range strings.Split(spec, "\n") {
			kind, rest, _ := strings.Cut(line, " ")
			p, target, _ := strings.Cut(rest, " ")
			if !filepath.IsLocal(p) || strings.ContainsRune(p+target, 0) {
				continue
			}
			full := filepath.Join(root, p)
			switch kind {
			case "d":
				_ = os.MkdirAll(full, 0o755)
			case "f":
				_ = os.WriteFile(full, []byte("f"), 0o644)
			case "l":
				if target != "" {
					_ = os.Symlink(target, full)
				}
			}
		}
		if strings.ContainsRune(sub, 0) {
			return
		}
		got, err := OpenInRoot(root, sub)
		rfd, rerr := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		must(t, rerr)
		defer unix.Close(rfd)
		wfd, werr := walkInRoot(rfd, sub)
		if err != nil {
			if werr == nil {
				unix.Close(wfd)
				// The walk is stricter about nothing; disagreeing is a bug
				// unless the kernel refused for a reason the walk can't see.
				if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENAMETOOLONG) {
					t.Fatalf("openat2 refused %q (%v), the walk resolved it", sub, err)
				}
			}
			return
		}
		defer got.Close()
		p := where(t, got.Fd())
		if p != root && !strings.HasPrefix(p, root+"/") {
			t.Fatalf("%q resolved outside the root: %s (base %s)", sub, p, base)
		}
		if werr != nil {
			if !errors.Is(werr, unix.ENAMETOOLONG) {
				t.Fatalf("the walk refused %q (%v), openat2 resolved it to %s", sub, werr, p)
			}
			return
		}
		defer unix.Close(wfd)
		if wp := where(t, uintptr(wfd)); wp != p {
			t.Fatalf("%q: openat2 %s, walk %s", sub, p, wp)
		}
	})
}
