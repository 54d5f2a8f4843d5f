//go:build !crimux_fault

// Package fault lets a test build of crimux die at a named point (see
// fault.go); in this build Point does nothing.
package fault

// Enabled reports whether this build can trigger fault points.
const Enabled = false

// Point does nothing outside test builds.
func Point(string) {}

// Armed is false outside test builds.
func Armed(string) bool { return false }
