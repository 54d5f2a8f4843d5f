// Package test holds crimux's integration tests: real containerd, runc, CNI
// plugins and an in-process registry, driven over crimux's socket with the
// kubelet's CRI client.
package test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/crimux/crimux/test/harness"
)

var (
	runtimeHandler = flag.String("runtime-handler", "", "handler the tests run pods with (empty = the default, runc)")
	binDir         = flag.String("bin-dir", os.Getenv("CRIMUX_TEST_BIN_DIR"), "where containerd 2.x, its shims and crictl are (default $GOPATH/bin)")
)

var env *harness.Env

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration tests need real containers; -short given, not running them")
		os.Exit(m.Run())
	}
	var err error
	env, err = harness.Start(harness.Options{RepoRoot: repoRoot(), BinDir: *binDir, Handler: *runtimeHandler, Forward: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration harness: %v\n", err)
		if env != nil {
			fmt.Fprintln(os.Stderr, env.Logs())
		}
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, env.Logs())
	}
	if races := env.RaceReports(); len(races) > 0 {
		fmt.Fprintf(os.Stderr, "the race detector reported %d data races in crimux:\n%s\n", len(races), strings.Join(races, "==================\n"))
		code = 1
	}
	env.Stop()
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 3*60e9)
	t.Cleanup(cancel)
	return c
}

func needEnv(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("integration environment not started (-short)")
	}
}

// isGvisor reports whether the suite runs on a gVisor handler.
func isGvisor() bool { return strings.HasPrefix(*runtimeHandler, "gvisor") }
