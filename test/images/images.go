// Package images builds the test images crimux's tests need, from what the
// host has (Debian's dynamic busybox and its libraries) and small static Go
// programs, and serves them from an in-process registry on 127.0.0.1.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is Debian's dynamically linked busybox: its applets run as real
// execs when reached through hardlinks (busybox-static runs them in-process).
const BusyboxPath = "/usr/bin/busybox"

// Layer builds one image layer.
type Layer = tarBuilder

// NewLayer starts an empty layer.
func NewLayer() *Layer { return newTar() }

// Dir adds a directory.
func (t *tarBuilder) Dir(p string, mode int64) { t.dir(p, mode) }

// File adds a regular file (mode may carry setuid bits).
func (t *tarBuilder) File(p string, mode int64, data []byte) { t.file(p, mode, data) }

// Symlink adds a symbolic link at p pointing to target (as given: absolute,
// relative or climbing).
func (t *tarBuilder) Symlink(p, target string) { t.symlink(p, target) }

// HostFile copies a host file into the layer at the same path.
func (t *tarBuilder) HostFile(p string) error { return t.hostFile(p) }

// HostBinary copies a host binary and the shared libraries it needs.
func (t *tarBuilder) HostBinary(p string) error {
	if err := t.hostFile(p); err != nil {
		return err
	}
	ls, err := libs(p)
	if err != nil {
		return err
	}
	for _, l := range ls {
		if t.seen[strings.TrimPrefix(l, "/")] {
			continue
		}
		if err := t.hostFile(l); err != nil {
			return fmt.Errorf("copy library %s: %w", l, err)
		}
	}
	return nil
}

// Build finishes the layer.
func (t *tarBuilder) Build() (v1.Layer, error) { return t.layer() }

// tarBuilder writes a layer.
type tarBuilder struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	seen map[string]bool
}

func newTar() *tarBuilder {
	t := &tarBuilder{seen: map[string]bool{}}
	t.tw = tar.NewWriter(&t.buf)
	return t
}

func (t *tarBuilder) dir(p string, mode int64) {
	p = strings.TrimPrefix(p, "/")
	if p == "" || p == "." || t.seen[p] {
		return
	}
	t.dir(filepath.Dir(p), 0o755)
	t.seen[p] = true
	_ = t.tw.WriteHeader(&tar.Header{Name: p + "/", Mode: mode, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)})
}

func (t *tarBuilder) file(p string, mode int64, data []byte) {
	p = strings.TrimPrefix(p, "/")
	t.dir(filepath.Dir(p), 0o755)
	t.seen[p] = true
	_ = t.tw.WriteHeader(&tar.Header{Name: p, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
	_, _ = t.tw.Write(data)
}

func (t *tarBuilder) link(p, target string) {
	p = strings.TrimPrefix(p, "/")
	if t.seen[p] {
		return
	}
	t.dir(filepath.Dir(p), 0o755)
	t.seen[p] = true
	_ = t.tw.WriteHeader(&tar.Header{Name: p, Linkname: strings.TrimPrefix(target, "/"), Typeflag: tar.TypeLink, Mode: 0o755, ModTime: time.Unix(0, 0)})
}

func (t *tarBuilder) symlink(p, target string) {
	p = strings.TrimPrefix(p, "/")
	if t.seen[p] {
		return
	}
	t.dir(filepath.Dir(p), 0o755)
	t.seen[p] = true
	_ = t.tw.WriteHeader(&tar.Header{Name: p, Linkname: target, Typeflag: tar.TypeSymlink, ModTime: time.Unix(0, 0)})
}

func (t *tarBuilder) layer() (v1.Layer, error) {
	if err := t.tw.Close(); err != nil {
		return nil, err
	}
	b := t.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// hostFile copies a host file (following symlinks) into the layer at the same path.
func (t *tarBuilder) hostFile(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	t.file(p, int64(st.Mode().Perm()), data)
	return nil
}

// libs lists the shared libraries (and the loader) a binary needs, via ldd.
func libs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var res []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				res = append(res, f)
			}
		}
	}
	return res, nil
}

// Passwd and Group are the busybox image's account files.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
	Group  = "root:x:0:\nwww-data:x:33:\nusers:x:100:www-data\nnogroup:x:65534:\n"
)

// busyboxLayer is busybox with every applet hardlinked into /bin, its
// libraries, and minimal /etc files.
func busyboxLayer() (v1.Layer, error) {
	t := newTar()
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read %s (install Debian's busybox package): %w", BusyboxPath, err)
	}
	t.file("/bin/busybox", 0o755, data)
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		t.link("/bin/"+a, "/bin/busybox")
	}
	ls, err := libs(BusyboxPath)
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if err := t.hostFile(l); err != nil {
			return nil, fmt.Errorf("copy library %s: %w", l, err)
		}
	}
	t.symlink("/usr/bin/env", "/bin/env")
	t.file("/etc/passwd", 0o644, []byte(Passwd))
	t.file("/etc/group", 0o644, []byte(Group))
	t.dir("/tmp", 0o1777)
	t.dir("/root", 0o700)
	t.dir("/var/www", 0o755)
	t.dir("/proc", 0o555)
	t.dir("/sys", 0o555)
	t.dir("/dev", 0o755)
	t.dir("/etc", 0o755)
	return t.layer()
}

// Busybox returns the busybox image: sh as its command, a PATH, root user.
func Busybox() (v1.Image, error) {
	l, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"sh"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cf)
}

// FromLayers returns a linux/amd64 image of just these layers.
func FromLayers(layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// WithConfig returns img with its config changed by f.
func WithConfig(img v1.Image, f func(*v1.Config)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	f(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

// WithLayer returns img with one more layer.
func WithLayer(img v1.Image, l *Layer) (v1.Image, error) {
	layer, err := l.Build()
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layer)
}

// WithFile returns img with one more layer holding a file.
func WithFile(img v1.Image, p string, mode int64, data []byte) (v1.Image, error) {
	t := newTar()
	t.file(p, mode, data)
	l, err := t.layer()
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, l)
}

// Registry is an in-process registry on 127.0.0.1.
type Registry struct {
	// Host is 127.0.0.1:port.
	Host string
	srv  *http.Server
	ln   net.Listener
}

// StartRegistry serves an empty in-memory registry on a free loopback port.
func StartRegistry(addr string) (*Registry, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(nopLogger())), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Registry{Host: ln.Addr().String(), srv: srv, ln: ln}, nil
}

// Push stores img under repo:tag (repo like "library/busybox").
func (r *Registry) Push(repoTag string, img v1.Image) (string, error) {
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// Close stops the registry.
func (r *Registry) Close() error { return r.srv.Close() }

// WriteMirrors writes hosts.toml files under dir that send pulls for each of
// the named registries to this registry over plain HTTP, as an operator of an
// air-gapped node would configure it.
func (r *Registry) WriteMirrors(dir string, hosts ...string) error {
	for _, h := range hosts {
		d := filepath.Join(dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		// The local registry is the server too, so that a pull it can't
		// serve fails there instead of falling back to the real registry
		// (tests never resolve names or leave the node).
		server := "http://" + r.Host
		if _, err := os.Stat(filepath.Join(d, "hosts.toml")); err == nil {
			continue // written already for this host
		}
		body := fmt.Sprintf("server = %q\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server, r.Host)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
