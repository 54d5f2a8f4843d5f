package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, file string, env []string, args ...string) (*Config, error) {
	t.Helper()
	fs := Flags()
	if file != "" {
		args = append(args, "--config", file)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, env)
}

// The runtime binary must exist for validation; "true" does on any machine.
const okBinary = "true"

func TestLoad(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	for _, tc := range []struct {
		desc    string
		name    string
		body    string
		env     []string
		args    []string
		wantErr string
		check   func(*testing.T, *Config)
	}{
		{
			desc: "built-in defaults with no file",
			check: func(t *testing.T, c *Config) {
				if c.Socket != "/run/crimux/crimux.sock" || c.Containerd.Namespace != "crimux" || c.DefaultHandler != "runc" {
					t.Errorf("unexpected defaults: %+v", c)
				}
				if _, ok := c.Handlers["runc"]; !ok {
					t.Errorf("no runc handler: %+v", c.Handlers)
				}
			},
		},
		{
			desc: "toml file, env and flag precedence",
			name: "c.toml",
			body: "socket = \"/tmp/file.sock\"\nlog_level = \"debug\"\n[containerd]\nnamespace = \"fromfile\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n",
			env:  []string{"CRIMUX_CONTAINERD_NAMESPACE=fromenv", "CRIMUX_CNI_BIN_DIRS=/a,/b", "PATH=" + os.Getenv("PATH")},
			args: []string{"--socket", "/tmp/flag.sock"},
			check: func(t *testing.T, c *Config) {
				if c.Socket != "/tmp/flag.sock" {
					t.Errorf("flag did not win: %s", c.Socket)
				}
				if c.Containerd.Namespace != "fromenv" {
					t.Errorf("env did not win: %s", c.Containerd.Namespace)
				}
				if c.LogLevel != "debug" {
					t.Errorf("file ignored: %s", c.LogLevel)
				}
				if strings.Join(c.CNI.BinDirs, ":") != "/a:/b" {
					t.Errorf("list from env: %v", c.CNI.BinDirs)
				}
				if c.Handlers["runc"].RuntimeType != "io.containerd.runc.v2" {
					t.Errorf("handler defaults not applied: %+v", c.Handlers["runc"])
				}
			},
		},
		{
			desc: "yaml file",
			name: "c.yaml",
			body: "default_handler: fast\nhandlers:\n  fast:\n    runtime_path: \"" + okBinary + "\"\n",
			check: func(t *testing.T, c *Config) {
				if c.DefaultHandler != "fast" || c.Handlers["fast"].Snapshotter != "overlayfs" {
					t.Errorf("yaml not applied: %+v", c)
				}
			},
		},
		{desc: "unknown top-level key", name: "c.toml", body: "sockett = \"/x\"\n", wantErr: "sockett"},
		{desc: "unknown handler key", name: "c.toml", body: "[handlers.runc]\nruntime_pth = \"runc\"\n", wantErr: "runtime_pth"},
		{desc: "handler name not a DNS label", name: "c.toml", body: "default_handler = \"a_b\"\n[handlers.a_b]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "handlers.a_b: handler name \"a_b\" is not a DNS label"},
		{desc: "default handler not configured", name: "c.toml", body: "default_handler = \"kata\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "default_handler: \"kata\" is not a configured handler (configured: runc)"},
		{desc: "missing runtime binary", name: "c.toml", body: "[handlers.runc]\nruntime_path = \"/nonexistent/runc\"\n", wantErr: "handlers.runc.runtime_path: runtime binary \"/nonexistent/runc\" not found"},
		{desc: "unknown driver", name: "c.toml", body: "[handlers.runc]\ndriver = \"docker\"\nruntime_path = \"" + okBinary + "\"\n", wantErr: "handlers.runc.driver: unknown driver \"docker\""},
		{desc: "k8s.io namespace refused", name: "c.toml", body: "[containerd]\nnamespace = \"k8s.io\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "containerd.namespace"},
		{desc: "bad log level", name: "c.toml", body: "log_level = \"loud\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n", wantErr: "log_level: \"loud\""},
		{desc: "relative socket", args: []string{"--socket", "x.sock"}, wantErr: "socket: \"x.sock\" is not an absolute path"},
		{desc: "unknown env variable", env: []string{"CRIMUX_SOKET=/x"}, wantErr: "CRIMUX_SOKET"},
		{desc: "runsc_config on a runc handler", name: "c.toml", body: "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n[handlers.runc.runsc_config]\nplatform = \"kvm\"\n", wantErr: "handlers.runc.runsc_config: only for runtime_type"},
		{desc: "unusable runsc", name: "c.toml", body: "default_handler = \"gvisor\"\n[handlers.gvisor]\nruntime_type = \"io.containerd.runsc.v1\"\nruntime_path = \"false\"\n", wantErr: "handlers.gvisor.runtime_path: runsc at \"/usr/bin/false\" is unusable"},
		{desc: "memory_limit_check on a runc handler", name: "c.toml", body: "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\nmemory_limit_check = \"1s\"\n", wantErr: "handlers.runc.memory_limit_check: only for runtime_type io.containerd.runsc.v1"},
		{desc: "bad memory_limit_check", name: "c.toml", body: "default_handler = \"gvisor\"\n[handlers.gvisor]\nruntime_type = \"io.containerd.runsc.v1\"\nruntime_path = \"false\"\nmemory_limit_check = \"10ms\"\n", wantErr: "handlers.gvisor.memory_limit_check: \"10ms\" is not \"0s\" (off) or a duration of at least 100ms"},
		{desc: "malformed toml", name: "c.toml", body: "socket = \n", wantErr: "read config file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			file := ""
			if tc.name != "" {
				file = writeFile(t, tc.name, tc.body)
			}
			c, err := load(t, file, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				// The default runc handler needs runc in PATH; skip only that case.
				if strings.Contains(err.Error(), "handlers.runc.runtime_path") && tc.name == "" {
					t.Skipf("runc not installed: %v", err)
				}
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := load(t, "/nonexistent/crimux.toml", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/crimux.toml") {
		t.Fatalf("error = %v", err)
	}
}

// fakeShimPath puts a stand-in containerd-shim-runsc-v1 on PATH.
func fakeShimPath(t *testing.T) {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, RunscShim), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", d+":"+os.Getenv("PATH"))
}

func TestTOMLRoundTrip(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	fakeShimPath(t)
	body := "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\npod_annotations = [\"io.x/\"]\n[handlers.other]\nruntime_type = \"io.containerd.runsc.v1\"\nruntime_path = \"" + okBinary + "\"\n[handlers.other.runsc_config]\nplatform = \"systrap\"\n"
	c, err := load(t, writeFile(t, "c.toml", body), nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := load(t, writeFile(t, "again.toml", c.TOML()), nil)
	if err != nil {
		t.Fatalf("reload of dumped config: %v\n%s", err, c.TOML())
	}
	if again.TOML() != c.TOML() {
		t.Fatalf("round trip differs:\n%s\n---\n%s", c.TOML(), again.TOML())
	}
}

func TestMemoryCheckInterval(t *testing.T) {
	for _, tc := range []struct {
		h    Handler
		want time.Duration
	}{
		{Handler{RuntimeType: RuntimeRunc, MemoryLimitCheck: "1s"}, 0},
		{Handler{RuntimeType: RuntimeRunsc}, DefaultMemoryLimitCheck},
		{Handler{RuntimeType: RuntimeRunsc, MemoryLimitCheck: "0s"}, 0},
		{Handler{RuntimeType: RuntimeRunsc, MemoryLimitCheck: "250ms"}, 250 * time.Millisecond},
	} {
		if got := tc.h.MemoryCheckInterval(); got != tc.want {
			t.Errorf("%+v: interval %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestStreamingAddress(t *testing.T) {
	defaultFile = "/nonexistent/default.toml"
	cert := writeFile(t, "cert.pem", "x")
	for _, tc := range []struct {
		desc, body, wantErr string
	}{
		{desc: "loopback v4", body: "address = \"127.0.0.1:0\""},
		{desc: "loopback v6", body: "address = \"[::1]:10010\""},
		{desc: "localhost", body: "address = \"localhost:0\""},
		{desc: "all addresses in plain text", body: "address = \":10010\"", wantErr: "streaming.address: \":10010\" is not a loopback address"},
		{desc: "node address in plain text", body: "address = \"10.0.0.5:10010\"", wantErr: "streaming.allow_insecure_remote"},
		{desc: "node address allowed", body: "address = \"10.0.0.5:10010\"\nallow_insecure_remote = true"},
		{desc: "node address with TLS", body: "address = \"10.0.0.5:10010\"\ntls_cert_file = \"" + cert + "\"\ntls_key_file = \"" + cert + "\""},
		{desc: "cert without key", body: "tls_cert_file = \"" + cert + "\"", wantErr: "give both or neither"},
		{desc: "missing cert", body: "tls_cert_file = \"/no/cert\"\ntls_key_file = \"/no/key\"", wantErr: "streaming.tls_cert_file: stat /no/cert"},
		{desc: "not host:port", body: "address = \"127.0.0.1\"", wantErr: "streaming.address: \"127.0.0.1\" is not host:port"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			body := "[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n[streaming]\n" + tc.body + "\n"
			_, err := load(t, writeFile(t, "c.toml", body), nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzLoad: no config file makes the loader panic, and every config it
// accepts is written back by TOML() as a file it loads to the same config.
func FuzzLoad(f *testing.F) {
	defaultFile = "/nonexistent/default.toml"
	f.Add("[handlers.runc]\nruntime_path = \"" + okBinary + "\"\n")
	f.Add("socket = \"/tmp/s.sock\"\nlog_level = \"debug\"\n[containerd]\nnamespace = \"x\"\ntimeout = \"3s\"\n[handlers.runc]\nruntime_path = \"" + okBinary + "\"\npod_annotations = [\"io.x/\"]\n")
	f.Add("[streaming]\naddress = \"10.0.0.1:1\"\nallow_insecure_remote = true\n[handlers.a-b]\nruntime_path = \"" + okBinary + "\"\n[handlers.a-b.runsc_config]\nx = \"y\"\ndefault_handler = \"a-b\"\n")
	f.Add("[cni]\nbin_dirs = [\"/a\", \"/b\"]\ntimeout = \"-1s\"\n[handlers.\"Bad Name\"]\n")
	f.Add("default_handler = 5\n[handlers]\nrunc = 3\n")
	f.Add("\x00\n[[x]]\n")
	f.Fuzz(func(t *testing.T, body string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		fs := Flags()
		if err := fs.Parse([]string{"--config", p}); err != nil {
			t.Fatal(err)
		}
		c, err := Load(fs, nil)
		if err != nil {
			return
		}
		dump := c.TOML()
		p2 := filepath.Join(dir, "again.toml")
		if err := os.WriteFile(p2, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
		fs2 := Flags()
		if err := fs2.Parse([]string{"--config", p2}); err != nil {
			t.Fatal(err)
		}
		again, err := Load(fs2, nil)
		if err != nil {
			t.Fatalf("accepted config does not load back from its dump: %v\n%s", err, dump)
		}
		if again.TOML() != dump {
			t.Fatalf("round trip differs:\n%s\n---\n%s", dump, again.TOML())
		}
	})
}
