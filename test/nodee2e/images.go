package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crimux/crimux/test/images"
)

// mirrorHosts are the registries the suite names, besides the ones the
// harness mirrors already (docker.io, registry.k8s.io): each goes to the
// local registry, so a pull of an image that isn't there fails on the node
// instead of leaving it (the invalid-registry and private-registry specs
// expect a failed pull).
var mirrorHosts = []string{"gcr.io", "invalid.registry.k8s.io", "quay.io"}

// Image repositories as the local registry serves them (the mirrors map
// registry.k8s.io/X to X).
const e2eRepo = "e2e-test-images/"

// nodeImages builds the images the suite's specs run, as close to upstream's
// test/images as offline building allows: from Debian's busybox (every
// applet linked) plus static programs built from the suite's own sources
// (agnhost, nnp) or ours (nmeter, which Debian's busybox lacks).
func pushNodeImages(reg *images.Registry, nodeBin, repoRoot, workDir string) error {
	bb, err := images.Busybox()
	if err != nil {
		return err
	}
	// Static stand-ins for what Debian's busybox lacks.
	for _, prog := range []string{"nmeter", "nc"} {
		if out, err := exec.Command("go", "build", "-C", repoRoot, "-o", filepath.Join(workDir, prog), "./test/cmd/"+prog).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v: %s", prog, err, out)
		}
	}
	// bash (specs run /bin/bash -c with traps in agnhost's image, which
	// upstream builds from alpine with bash). sh stays busybox's: specs
	// compare its error messages.
	l := images.NewLayer()
	if err := l.HostBinary("/bin/bash"); err != nil {
		return err
	}
	nm, err := os.ReadFile(filepath.Join(workDir, "nmeter"))
	if err != nil {
		return err
	}
	l.File("/bin/nmeter", 0o755, nm)
	busybox, err := images.WithLayer(bb, l)
	if err != nil {
		return err
	}
	// agnhost: its binary as entrypoint, "pause" as the default command,
	// agnhost-2 (the entrypoint specs swap in) and the user and group
	// upstream's image defines.
	agnhost, err := withHostFiles(busybox, map[string]string{"/agnhost": filepath.Join(nodeBin, "agnhost")})
	if err != nil {
		return err
	}
	// Upstream's agnhost image has curl and netcat (alpine packages):
	// specs' hooks and probes run curl, one sends UDP with nc -u. Its TLS
	// server certificate and key (from agnhost's porter) serve netexec's
	// https endpoint.
	l = images.NewLayer()
	if err := l.HostBinary("/usr/bin/curl"); err != nil {
		return err
	}
	nc, err := os.ReadFile(filepath.Join(workDir, "nc"))
	if err != nil {
		return err
	}
	l.File("/usr/bin/nc", 0o755, nc)
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		b, err := os.ReadFile(filepath.Join(nodeBin, f))
		if err != nil {
			return fmt.Errorf("agnhost's %s: %w", f, err)
		}
		l.File("/"+f, 0o644, b)
	}
	l.Symlink("/agnhost-2", "agnhost")
	l.Dir("/uploads", 0o755)
	l.File("/etc/passwd", 0o644, []byte(images.Passwd+"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"))
	l.File("/etc/group", 0o644, []byte(images.Group+"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"))
	if agnhost, err = images.WithLayer(agnhost, l); err != nil {
		return err
	}
	if agnhost, err = images.WithConfig(agnhost, func(c *v1.Config) {
		c.Entrypoint, c.Cmd = []string{"/agnhost"}, []string{"pause"}
	}); err != nil {
		return err
	}
	// nginx: a web server on port 80 serving a page, as the specs use it
	// (busybox's httpd stands in for nginx).
	l = images.NewLayer()
	l.Dir("/usr/share/nginx/html", 0o755)
	l.File("/usr/share/nginx/html/index.html", 0o644, []byte("<html><body>Welcome to nginx!</body></html>\n"))
	nginx, err := images.WithLayer(busybox, l)
	if err != nil {
		return err
	}
	if nginx, err = images.WithConfig(nginx, func(c *v1.Config) {
		c.Cmd = []string{"httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"}
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	}); err != nil {
		return err
	}
	// nonewprivs: nnp, setuid root, prints its effective uid.
	nnpData, err := os.ReadFile(filepath.Join(nodeBin, "nnp"))
	if err != nil {
		return err
	}
	nonewprivs, err := images.WithFile(busybox, "/usr/local/bin/nnp", 0o4755, nnpData)
	if err != nil {
		return err
	}
	if nonewprivs, err = images.WithConfig(nonewprivs, func(c *v1.Config) { c.Cmd = []string{"nnp"} }); err != nil {
		return err
	}
	// nonroot: runs as uid 1234 unless told otherwise.
	nonroot, err := images.WithConfig(busybox, func(c *v1.Config) { c.User = "1234" })
	if err != nil {
		return err
	}
	pauseData, err := os.ReadFile(filepath.Join(workDir, "crimux-pause"))
	if err != nil {
		return err
	}
	pl := images.NewLayer()
	pl.File("/pause", 0o755, pauseData)
	plb, err := pl.Build()
	if err != nil {
		return err
	}
	pause, err := images.FromLayers(plb)
	if err == nil {
		pause, err = images.WithConfig(pause, func(c *v1.Config) { c.Entrypoint = []string{"/pause"} })
	}
	if err != nil {
		return err
	}
	// glibc-dns-testing: name lookups through /etc/hosts with glibc's
	// rules (upstream: Debian with dnsutils); the specs run sh, echo and
	// hostname -f.
	glibcDNS, err := images.WithFile(busybox, "/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n"))
	if err != nil {
		return err
	}
	set := map[string]v1.Image{
		e2eRepo + "glibc-dns-testing:2.1.1": glibcDNS,
		"pause:3.10.2":                      pause,
		e2eRepo + "busybox:1.37.0-2":        busybox,
		e2eRepo + "busybox:1.36.1-1":        busybox,
		e2eRepo + "agnhost:2.66.1":          agnhost,
		e2eRepo + "agnhost:2.55":            agnhost,
		e2eRepo + "nginx:1.27.0-2":          nginx,
		e2eRepo + "nginx:1.28.0-2":          nginx,
		e2eRepo + "nonewprivs:1.4":          nonewprivs,
		e2eRepo + "nonroot:1.5":             nonroot,
		"library/busybox:1.37":              busybox,
		"library/busybox:1.29-2":            busybox,
		"library/nginx:1.27.0":              nginx,
	}
	for ref, img := range set {
		// One image ID per reference, as upstream's are: specs compare a
		// container's image with the reference they gave, and a runtime
		// reports one of an image's tags.
		img, err := images.WithConfig(img, func(c *v1.Config) {
			c.Labels = map[string]string{"io.crimux.test/ref": ref}
		})
		if err != nil {
			return err
		}
		if _, err := reg.Push(ref, img); err != nil {
			return err
		}
	}
	return nil
}

// withHostFiles adds host files (dest -> source) to img in one layer.
func withHostFiles(img v1.Image, files map[string]string) (v1.Image, error) {
	l := images.NewLayer()
	for dst, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		l.File(dst, 0o755, data)
	}
	return images.WithLayer(img, l)
}
