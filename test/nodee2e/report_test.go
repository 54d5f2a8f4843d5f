package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crimux/crimux/test/skiplist"
)

func TestReadReport(t *testing.T) {
	p := filepath.Join(t.TempDir(), "report.json")
	body := `[{"SpecReports": [
	  {"ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "should run [NodeConformance]", "LeafNodeType": "It", "State": "passed", "RunTime": 3000000000, "NumAttempts": 2},
	  {"ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "should fail [NodeConformance]", "LeafNodeType": "It", "State": "failed", "Failure": {"Message": "boom\nmore"}},
	  {"ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "is serial [Serial] [NodeConformance]", "LeafNodeType": "It", "State": "skipped"},
	  {"ContainerHierarchyTexts": [], "LeafNodeText": "", "LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"}
	]}]`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := readReport(p, func(n string) bool { return !strings.Contains(n, "[Serial]") })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]spec{
		"[sig-node] Pods should run [NodeConformance]":  {Name: "[sig-node] Pods should run [NodeConformance]", State: "passed", Seconds: 3, Attempts: 2},
		"[sig-node] Pods should fail [NodeConformance]": {Name: "[sig-node] Pods should fail [NodeConformance]", State: "failed", Failure: "boom"},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	if c := count(rep); c != (tally{Passed: 1, Failed: 1}) {
		t.Errorf("count %+v", c)
	}
}

func TestSkipList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "skips.txt")
	body := "# comment\n\nall | PrivilegedPod | no dummy links\ngvisor | HostPath | privileged containers\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	skips, err := skiplist.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := skipRegexp("base", skips, "runc"); got != "base|(?:PrivilegedPod)" {
		t.Errorf("runc skip %q", got)
	}
	if got := skipRegexp("base", skips, "gvisor"); got != "base|(?:PrivilegedPod)|(?:HostPath)" {
		t.Errorf("gvisor skip %q", got)
	}
}

// runc may fail only what containerd's CRI fails; gvisor nothing.
func TestUnexcused(t *testing.T) {
	mk := func(states map[string]string) map[string]spec {
		out := map[string]spec{}
		for n, st := range states {
			out[n] = spec{Name: n, State: st}
		}
		return out
	}
	base := mk(map[string]string{"a": "failed", "b": "passed"})
	rep := mk(map[string]string{"a": "failed", "b": "timedout", "c": "failed", "d": "passed"})
	if got := unexcused("runc", rep, base, true); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Errorf("runc with a baseline: %v", got)
	}
	if got := unexcused("runc", rep, nil, false); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("runc without a baseline: %v", got)
	}
	if got := unexcused("gvisor", rep, base, true); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("gvisor: %v", got)
	}
	if got := unexcused("containerd", rep, base, true); got != nil {
		t.Errorf("the baseline: %v", got)
	}
}
