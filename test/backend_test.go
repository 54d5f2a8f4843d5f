package test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/crimux/crimux/backends/backendtest"
	"github.com/crimux/crimux/backends/containerd"
	"github.com/crimux/crimux/backends/cri"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/test/harness"
)

// The containerd driver passes the backend suite (backends/backendtest) for
// the suite's handler, driven directly with no router in between, in a
// containerd namespace of its own.
func TestBackendSuite(t *testing.T) {
	needEnv(t)
	fs := conf.Flags()
	if err := fs.Parse([]string{"--config", env.Config}); err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.Load(fs, nil, containerd.ConfDriver(), cri.ConfDriver())
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]conf.Handler{}
	for name, h := range cfg.Handlers {
		if h.Driver == containerd.DriverName {
			handlers[name] = h
		}
	}
	dir := filepath.Join(env.Dir, "backendtest")
	rec := &backendtest.Recorder{}
	d, err := containerd.New(containerd.Options{
		Address:          cfg.Containerd.Address,
		Namespace:        "crimux-backendtest",
		Timeout:          cfg.Containerd.Timeout,
		StateDir:         filepath.Join(dir, "state"),
		RegistryHostsDir: cfg.RegistryHostsDir,
		PauseBinary:      cfg.PauseBinary,
		Handlers:         handlers,
		CgroupDriver:     cfg.CgroupDriver,
		Instance:         "0123456789abcdef0123456789abcdef",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Start(rec)
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.Ready(c); err != nil {
		t.Fatal(err)
	}
	img, err := d.Images().Pull(c, harness.Busybox, nil, d.Snapshotter(env.Handler))
	if err != nil {
		t.Fatalf("pull %s: %v", harness.Busybox, err)
	}
	pause, err := d.Images().ImportPause(c)
	if err != nil {
		t.Fatal(err)
	}
	name := harness.Busybox
	if len(img.RepoTags) > 0 {
		name = img.RepoTags[0]
	}
	backendtest.Run(t, backendtest.Config{Driver: d, Handler: env.Handler, Recorder: rec, PauseImage: pause, Image: name, Dir: dir})
}
