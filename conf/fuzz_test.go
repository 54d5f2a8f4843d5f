package conf_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/crimux/crimux/backends/containerd"
	"github.com/crimux/crimux/conf"
)

// FuzzLoad: no config file makes the loader panic (with the containerd
// driver's checks, as crimux loads it), and every config it accepts is
// written back by TOML() as a file it loads to the same config.
func FuzzLoad(f *testing.F) {
	f.Add("[handlers.runc]\nruntime_path = \"true\"\n")
	f.Add("socket = \"/tmp/s.sock\"\nlog_level = \"debug\"\n[containerd]\nnamespace = \"x\"\ntimeout = \"3s\"\n[handlers.runc]\nruntime_path = \"true\"\npod_annotations = [\"io.x/\"]\n")
	f.Add("[streaming]\naddress = \"10.0.0.1:1\"\nallow_insecure_remote = true\n[handlers.a-b]\nruntime_type = \"io.containerd.runsc.v1\"\nmemory_limit_check = \"2s\"\n[handlers.a-b.runsc_config]\nx = \"y\"\ndefault_handler = \"a-b\"\n")
	f.Add("[cni]\nbin_dirs = [\"/a\", \"/b\"]\ntimeout = \"-1s\"\n[handlers.\"Bad Name\"]\n")
	f.Add("default_handler = 5\n[handlers]\nrunc = 3\n")
	f.Add("\x00\n[[x]]\n")
	drivers := []conf.Driver{containerd.ConfDriver()}
	f.Fuzz(func(t *testing.T, body string) {
		dir := t.TempDir()
		load := func(name, body string) (*conf.Config, error) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			fs := conf.Flags()
			if err := fs.Parse([]string{"--config", p}); err != nil {
				t.Fatal(err)
			}
			return conf.Load(fs, nil, drivers...)
		}
		c, err := load("c.toml", body)
		if err != nil {
			return
		}
		dump := c.TOML()
		again, err := load("again.toml", dump)
		if err != nil {
			t.Fatalf("accepted config does not load back from its dump: %v\n%s", err, dump)
		}
		if again.TOML() != dump {
			t.Fatalf("round trip differs:\n%s\n---\n%s", dump, again.TOML())
		}
	})
}
