package main

import (
	"strings"
	"testing"
)

// The resource table shows what crimux costs with the containerd it drives,
// not crimux alone, against containerd with its CRI plugin.
func TestResourceTableCountsCrimuxsContainerd(t *testing.T) {
	r := &results{Resources: []resourcePoint{{Handler: "runc", Pods: 100, Procs: map[string]usage{
		procCrimux:           {RSSMiB: 50, CPUSeconds: 10},
		procCrimuxContainerd: {RSSMiB: 70, CPUSeconds: 20.5},
		procContainerdCRI:    {RSSMiB: 130, CPUSeconds: 25},
	}}}}
	var sb strings.Builder
	r.resourceTable(&sb)
	want := "| runc | 100 | 50.0 | 10.00 | 70.0 | 20.50 | 120.0 | 30.50 | 130.0 | 25.00 |"
	if !strings.Contains(sb.String(), want) {
		t.Fatalf("resource table lacks the row %q:\n%s", want, sb.String())
	}
}

// A process's CPU time includes the children it waited for (the CNI
// plugins crimux and containerd's CRI run, shim start commands).
func TestParseStatCountsWaitedChildren(t *testing.T) {
	// pid (comm with) spaces) state ppid pgrp session tty tpgid flags
	// minflt cminflt majflt cmajflt utime stime cutime cstime ...
	stat := "42 (a b) c) S 1 42 42 0 -1 4194560 100 200 0 0 150 50 300 100 20 0 12 0 1000 2000000 500"
	got, err := cpuSeconds(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 6 {
		t.Fatalf("cpuSeconds = %v, want 6 (utime 1.5 + stime 0.5 + cutime 3 + cstime 1)", got)
	}
	if _, err := cpuSeconds("42 (x) S 1"); err == nil {
		t.Fatal("a short stat line parsed")
	}
}

// The machine line names runsc's build when runsc has no version stamped,
// and keeps every other version line as it is.
func TestVersionLine(t *testing.T) {
	for out, want := range map[string]string{
		"runsc version VERSION_MISSING\nspec: 1.1.0\n":                   "runsc with no version stamped (go build from the module proxy, as make deps builds it)",
		"runc version 1.2.6\ncommit: v1.2.6\n":                           "runc version 1.2.6",
		"containerd github.com/containerd/containerd/v2 2.4.2+unknown\n": "containerd github.com/containerd/containerd/v2 2.4.2+unknown",
	} {
		if got := versionLine(out); got != want {
			t.Errorf("versionLine(%q) = %q, want %q", out, got, want)
		}
	}
}
