package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/crimux/crimux/test/skiplist"
)

// spec is one spec's outcome in a ginkgo JSON report.
type spec struct {
	Name    string `json:"name"`
	State   string `json:"state"` // passed, failed, skipped, timedout, panicked, interrupted, aborted, pending
	Seconds int    `json:"seconds"`
	Failure string `json:"failure,omitempty"`
	// Attempts is how many runs it took (more than one: it failed, then
	// passed on a retry).
	Attempts int `json:"attempts,omitempty"`
}

// readReport reads a ginkgo --json-report file: the It specs in scope (the
// focus and not the suite-wide skips; ginkgo reports every spec), by full
// text.
func readReport(path string, inScope func(name string) bool) (map[string]spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reports []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeText            string
			LeafNodeType            string
			State                   string
			RunTime                 int64
			NumAttempts             int
			Failure                 struct{ Message string }
		}
	}
	if err := json.Unmarshal(b, &reports); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]spec{}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if s.LeafNodeType != "It" {
				if s.State != "passed" && s.State != "skipped" {
					// A failed BeforeSuite fails every spec: say so.
					name := s.LeafNodeType
					out[name] = spec{Name: name, State: s.State, Failure: firstLine(s.Failure.Message)}
				}
				continue
			}
			name := strings.TrimSpace(strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " "))
			if !inScope(name) {
				continue
			}
			out[name] = spec{Name: name, State: s.State, Seconds: int(s.RunTime / 1e9), Failure: firstLine(s.Failure.Message), Attempts: s.NumAttempts}
		}
	}
	return out, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// failed reports whether a spec's state is a failure of some kind.
func failed(state string) bool {
	switch state {
	case "failed", "timedout", "panicked", "interrupted", "aborted":
		return true
	}
	return false
}

// skipRegexp is the ginkgo --skip expression for a handler: the suite-wide
// skips and the list's entries for the handler.
func skipRegexp(base string, skips []skiplist.Entry, handler string) string {
	parts := []string{base}
	for _, s := range skiplist.For(skips, handler) {
		parts = append(parts, "(?:"+s.Regexp+")")
	}
	return strings.Join(parts, "|")
}

// tally counts a report's specs by outcome.
type tally struct{ Passed, Failed, Skipped int }

func count(r map[string]spec) tally {
	var t tally
	for _, s := range r {
		switch {
		case s.State == "passed":
			t.Passed++
		case failed(s.State):
			t.Failed++
		default:
			t.Skipped++
		}
	}
	return t
}

func sortedNames(r map[string]spec, keep func(spec) bool) []string {
	var out []string
	for n, s := range r {
		if keep(s) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// report writes results.json and results.md and prints the verdict: runc
// (and any other crimux handler that is not gVisor) may fail only specs
// containerd's CRI fails too; gvisor may fail none.
func (r *runner) report(targets []string, results map[string]map[string]spec) int {
	type targetResult struct {
		Counts tally  `json:"counts"`
		Specs  []spec `json:"specs"`
	}
	js := map[string]targetResult{}
	for t, rep := range results {
		var specs []spec
		for _, n := range sortedNames(rep, func(spec) bool { return true }) {
			specs = append(specs, rep[n])
		}
		js[t] = targetResult{Counts: count(rep), Specs: specs}
	}
	if b, err := json.MarshalIndent(js, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(r.out, "results.json"), b, 0o644)
	}
	var md strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&md, "# Node conformance (e2e_node %s)\n\nRun %s on %s (%d cores); focus `%s`, skipped `%s` and the skip list; %d ginkgo processes, a failed spec run once more (`--flake-attempts=%d`).\n\n",
		k8sVersion, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), r.focus, baseSkip, r.nodes, flakeAttempts)
	md.WriteString("| target | passed | failed | skipped |\n|---|---|---|---|\n")
	for _, t := range targets {
		if rep, ok := results[t]; ok {
			c := count(rep)
			label := t
			if t == "containerd" {
				label = "containerd 2.4.2 CRI (runc)"
			} else {
				label = "crimux " + t
			}
			fmt.Fprintf(&md, "| %s | %d | %d | %d |\n", label, c.Passed, c.Failed, c.Skipped)
		}
	}
	code := 0
	base, haveBase := results["containerd"]
	for _, t := range targets {
		rep, ok := results[t]
		if !ok {
			code = 1
			continue
		}
		fails := sortedNames(rep, func(s spec) bool { return failed(s.State) })
		if len(fails) == 0 {
			continue
		}
		fmt.Fprintf(&md, "\n## Failed: %s\n\n", t)
		bad := map[string]bool{}
		for _, n := range unexcused(t, rep, base, haveBase) {
			bad[n] = true
			code = 1
		}
		for _, n := range fails {
			verdict := ""
			switch {
			case bad[n]:
				verdict = " **(crimux only)**"
			case t != "containerd":
				verdict = " (fails on containerd's CRI too)"
			}
			fmt.Fprintf(&md, "- %s%s — %s\n", n, verdict, rep[n].Failure)
		}
	}
	for _, t := range targets {
		rep, ok := results[t]
		if !ok {
			continue
		}
		retried := sortedNames(rep, func(s spec) bool { return s.State == "passed" && s.Attempts > 1 })
		if len(retried) == 0 {
			continue
		}
		fmt.Fprintf(&md, "\n## Passed on a retry: %s\n\n", t)
		for _, n := range retried {
			fmt.Fprintf(&md, "- %s\n", n)
		}
	}
	md.WriteString("\n## Skip list\n\n")
	for _, s := range r.skips {
		fmt.Fprintf(&md, "- %s: `%s` — %s\n", strings.Join(s.Handlers, ","), s.Regexp, s.Reason)
	}
	_ = os.WriteFile(filepath.Join(r.out, "results.md"), []byte(md.String()), 0o644)
	fmt.Print(md.String())
	return code
}

// unexcused are a target's failures that fail the run: for a crimux
// handler other than gvisor, those containerd's CRI (runc) passed or didn't
// run (every one when there is no baseline); for gvisor, every failure
// (its limits are in the skip list). containerd's own are the baseline.
func unexcused(target string, rep, base map[string]spec, haveBase bool) []string {
	if target == "containerd" {
		return nil
	}
	return sortedNames(rep, func(s spec) bool {
		if !failed(s.State) {
			return false
		}
		if target == "gvisor" || !haveBase {
			return true
		}
		b, ok := base[s.Name]
		return !ok || !failed(b.State)
	})
}
