package containerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeOptions(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		raw     map[string]any
		wantErr string
		check   func(*testing.T, HandlerOptions)
	}{
		{desc: "defaults", raw: nil, check: func(t *testing.T, o HandlerOptions) {
			if o.RuntimeType != RuntimeRunc || o.RuntimePath != "runc" || o.Snapshotter != "overlayfs" {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{desc: "runsc defaults its binary", raw: map[string]any{"runtime_type": RuntimeRunsc}, check: func(t *testing.T, o HandlerOptions) {
			if o.RuntimePath != "runsc" {
				t.Errorf("runtime_path %q", o.RuntimePath)
			}
		}},
		{desc: "lists from TOML arrays", raw: map[string]any{"pod_annotations": []any{"io.x/", "io.y/"}}, check: func(t *testing.T, o HandlerOptions) {
			if strings.Join(o.PodAnnotations, ",") != "io.x/,io.y/" {
				t.Errorf("pod_annotations %v", o.PodAnnotations)
			}
		}},
		{desc: "unknown key", raw: map[string]any{"runtime_pth": "runc"}, wantErr: "runtime_pth: unknown key"},
		{desc: "runsc_config on a runc handler", raw: map[string]any{"runsc_config": map[string]any{"platform": "kvm"}}, wantErr: "runsc_config: only for runtime_type io.containerd.runsc.v1"},
		{desc: "memory_limit_check on a runc handler", raw: map[string]any{"memory_limit_check": "1s"}, wantErr: "memory_limit_check: only for runtime_type io.containerd.runsc.v1"},
		{desc: "bad memory_limit_check", raw: map[string]any{"runtime_type": RuntimeRunsc, "memory_limit_check": "10ms"}, wantErr: `memory_limit_check: "10ms" is not "0s" (off) or a duration of at least 100ms`},
		{desc: "systemd_cgroup on runsc", raw: map[string]any{"runtime_type": RuntimeRunsc, "systemd_cgroup": true}, wantErr: "systemd_cgroup: only for runtime_type io.containerd.runc.v2"},
		{desc: "wrong type", raw: map[string]any{"systemd_cgroup": "maybe"}, wantErr: "systemd_cgroup"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			o, errs := DecodeOptions(tc.raw)
			if tc.wantErr != "" {
				if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.wantErr) {
					t.Fatalf("errors %v, want one with %q", errs, tc.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			tc.check(t, o)
			// What config check prints decodes back to the same options.
			again, errs := DecodeOptions(encodeOptions(o))
			if len(errs) > 0 || again.RuntimeType != o.RuntimeType || again.RuntimePath != o.RuntimePath || len(again.PodAnnotations) != len(o.PodAnnotations) {
				t.Fatalf("round trip: %+v %v", again, errs)
			}
		})
	}
}

// The checks a starting driver makes: binaries exist, runsc runs, gVisor's
// shim is on the PATH; each names its key.
func TestProbe(t *testing.T) {
	shim := t.TempDir()
	if err := os.WriteFile(filepath.Join(shim, RunscShim), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc    string
		o       HandlerOptions
		path    string
		wantErr string
	}{
		{desc: "runc found", o: HandlerOptions{RuntimeType: RuntimeRunc, RuntimePath: "true"}},
		{desc: "missing runtime binary", o: HandlerOptions{RuntimeType: RuntimeRunc, RuntimePath: "/nonexistent/runc"}, wantErr: `runtime_path: runtime binary "/nonexistent/runc" not found`},
		{desc: "unusable runsc", o: HandlerOptions{RuntimeType: RuntimeRunsc, RuntimePath: "false"}, path: shim, wantErr: "runtime_path: runsc at"},
		{desc: "no runsc shim", o: HandlerOptions{RuntimeType: RuntimeRunsc, RuntimePath: "true"}, path: "/nonexistent", wantErr: "runtime_type: io.containerd.runsc.v1 needs containerd-shim-runsc-v1 on containerd's PATH"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.path != "" {
				t.Setenv("PATH", tc.path+":/usr/bin:/bin")
			}
			errs := tc.o.probe()
			if tc.wantErr == "" {
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				return
			}
			found := false
			for _, err := range errs {
				found = found || strings.Contains(err.Error(), tc.wantErr)
			}
			if !found {
				t.Fatalf("errors %v, want one with %q", errs, tc.wantErr)
			}
		})
	}
}

func TestMemoryCheckInterval(t *testing.T) {
	for _, tc := range []struct {
		o    HandlerOptions
		want time.Duration
	}{
		{HandlerOptions{RuntimeType: RuntimeRunc, MemoryLimitCheck: "1s"}, 0},
		{HandlerOptions{RuntimeType: RuntimeRunsc}, DefaultMemoryLimitCheck},
		{HandlerOptions{RuntimeType: RuntimeRunsc, MemoryLimitCheck: "0s"}, 0},
		{HandlerOptions{RuntimeType: RuntimeRunsc, MemoryLimitCheck: "250ms"}, 250 * time.Millisecond},
	} {
		if got := tc.o.MemoryCheckInterval(); got != tc.want {
			t.Errorf("%+v: interval %v, want %v", tc.o, got, tc.want)
		}
	}
}
