package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/crimux/crimux/test/images"
)

// mirrorHosts are the registries critest names; crimux's registry mirror
// configuration sends them all to the local registry, as an air-gapped
// cluster's operator would configure it.
var mirrorHosts = []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws", "docker.io"}

// buildProgs builds the static helper programs into dir.
func buildProgs(repo, dir string) error {
	for name, pkg := range map[string]string{"webserver": "./test/critest/progs/webserver", "nonewprivs": "./test/critest/progs/nonewprivs", "pause": "./cmd/crimux-pause"} {
		cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

func read(dir, name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		panic(err)
	}
	return b
}

// critestImages builds every image critest pulls, by the path it has in
// the local registry (the mirrors keep the original registries' paths).
func critestImages(progs string) (map[string]v1.Image, error) {
	bb, err := images.Busybox()
	if err != nil {
		return nil, err
	}
	// busybox plus the real pgrep and ipcs critest execs.
	tools := images.NewLayer()
	for _, b := range []string{"/usr/bin/pgrep", "/usr/bin/ipcs"} {
		if err := tools.HostBinary(b); err != nil {
			return nil, fmt.Errorf("add %s (Debian's procps and util-linux): %w", b, err)
		}
	}
	e2eBusybox, err := images.WithLayer(bb, tools)
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Image{}
	add := func(path string, img v1.Image, err error) error {
		if err != nil {
			return fmt.Errorf("build %s: %w", path, err)
		}
		out[path] = img
		return nil
	}
	withFiles := func(base v1.Image, files map[string][]byte, mode int64, cfg func(*v1.Config)) (v1.Image, error) {
		l := images.NewLayer()
		for p, b := range files {
			l.File(p, mode, b)
		}
		img, err := images.WithLayer(base, l)
		if err != nil || cfg == nil {
			return img, err
		}
		return images.WithConfig(img, cfg)
	}
	web := read(progs, "webserver")
	errs := []error{
		add("e2e-test-images/busybox:1.29-2", e2eBusybox, nil),
	}
	img, err := withFiles(e2eBusybox, map[string][]byte{"/usr/sbin/nginx": web}, 0o755, func(c *v1.Config) {
		c.Entrypoint = []string{"/usr/sbin/nginx", "-g", "daemon off;"}
		c.Cmd = nil
		c.Env = append(c.Env, "WEBSERVER_FLAVOR=nginx", "PORT=80")
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		c.StopSignal = "SIGQUIT"
	})
	errs = append(errs, add("e2e-test-images/nginx:1.14-2", img, err))
	img, err = withFiles(e2eBusybox, map[string][]byte{"/usr/sbin/nginx": web}, 0o755, func(c *v1.Config) {
		c.Entrypoint = []string{"/usr/sbin/nginx", "-g", "daemon off;"}
		c.Cmd = nil
		c.Env = append(c.Env, "WEBSERVER_FLAVOR=nginx", "PORT=12003")
	})
	errs = append(errs, add("k8s-staging-cri-tools/hostnet-nginx-amd64:latest", img, err))
	img, err = withFiles(e2eBusybox, map[string][]byte{"/usr/local/apache2/bin/httpd": web}, 0o755, func(c *v1.Config) {
		c.Entrypoint = nil
		c.Cmd = []string{"/usr/local/apache2/bin/httpd", "-DFOREGROUND"}
		c.Env = append(c.Env, "WEBSERVER_FLAVOR=httpd", "PORT=80")
	})
	errs = append(errs, add("e2e-test-images/httpd:2.4.39-4", img, err))
	img, err = withFiles(e2eBusybox, map[string][]byte{"/usr/local/bin/nonewprivs": read(progs, "nonewprivs")}, 0o4755, func(c *v1.Config) {
		c.Cmd = []string{"/usr/local/bin/nonewprivs"}
	})
	errs = append(errs, add("e2e-test-images/nonewprivs:1.3", img, err))

	// Users and groups.
	user := func(u string) (v1.Image, error) {
		return images.WithConfig(e2eBusybox, func(c *v1.Config) { c.User = u })
	}
	for path, u := range map[string]string{
		"k8s-staging-cri-tools/test-image-user-uid:latest":            "1002",
		"k8s-staging-cri-tools/test-image-user-username:latest":       "www-data",
		"k8s-staging-cri-tools/test-image-user-uid-group:latest":      "1003:1004",
		"k8s-staging-cri-tools/test-image-user-username-group:latest": "www-data:1004",
	} {
		img, err := user(u)
		errs = append(errs, add(path, img, err))
	}
	img, err = withFiles(e2eBusybox, map[string][]byte{
		"/etc/passwd": []byte(images.Passwd + "default-user:x:1000:1000:default user:/home/default-user:/bin/sh\n"),
		"/etc/group":  []byte(images.Group + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
	}, 0o644, func(c *v1.Config) { c.User = "1000" })
	errs = append(errs, add("k8s-staging-cri-tools/test-image-predefined-group:latest", img, err))

	// Reference tests: distinct images get a file of their own.
	distinct := func(tag string) (v1.Image, error) {
		return withFiles(e2eBusybox, map[string][]byte{"/image-name": []byte(tag + "\n")}, 0o644, nil)
	}
	for _, p := range []string{"test-image-latest:latest", "test-image-tag:test", "test-image-tag:all", "test-image-1:latest", "test-image-2:latest", "test-image-3:latest"} {
		img, err := distinct(p)
		errs = append(errs, add("k8s-staging-cri-tools/"+p, img, err))
	}
	same, err := distinct("test-image-tags")
	for _, t := range []string{"1", "2", "3"} {
		errs = append(errs, add("k8s-staging-cri-tools/test-image-tags:"+t, same, err))
	}

	// pause:3.9, one image under two registries (same path here).
	pl := images.NewLayer()
	pl.File("/pause", 0o755, read(progs, "pause"))
	pause, err := images.WithLayer(empty.Image, pl)
	if err == nil {
		pause, err = images.WithConfig(pause, func(c *v1.Config) { c.Entrypoint = []string{"/pause"} })
	}
	if err == nil {
		pause, err = setPlatform(pause)
	}
	errs = append(errs, add("pause:3.9", pause, err))

	// Image listing benchmark images.
	for _, t := range []string{"1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"} {
		errs = append(errs, add("docker/library/busybox:"+t, e2eBusybox, nil))
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	return out, nil
}

func setPlatform(img v1.Image) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}
