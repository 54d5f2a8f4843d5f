//go:build crimux_fault

// Package fault lets a test build of crimux die at a named point: built
// with -tags crimux_fault, Point(name) kills the process with SIGKILL when
// CRIMUX_TEST_FAULT names that point, as a crash or an OOM kill would. In
// other builds Point does nothing and costs nothing.
package fault

import (
	"fmt"
	"os"
	"syscall"
)

// Enabled reports whether this build can trigger fault points.
const Enabled = true

// Point kills the process if CRIMUX_TEST_FAULT is name.
func Point(name string) {
	if os.Getenv("CRIMUX_TEST_FAULT") == name {
		fmt.Fprintf(os.Stderr, "crimux: fault point %s: killing myself\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// Armed reports whether CRIMUX_TEST_FAULT is name: a caller that must
// first bring the process to a given state (wait for work it started in
// the background) asks before it calls Point.
func Armed(name string) bool {
	return os.Getenv("CRIMUX_TEST_FAULT") == name
}
