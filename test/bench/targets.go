package main

import (
	"fmt"
	"strings"
)

// targetCheck is one of the goals crimux holds itself to, against this run.
type targetCheck struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// checkTargets checks this run against crimux's performance targets:
// whole-pod start p50 ≤ 0.95× and p99 ≤ 1.00× containerd's CRI; parallel
// starts, CreateContainer and RemoveContainer ≤ 1.00×; nothing slower than
// 1.05× at p50; List* with 500 pods under 5 ms; RSS under 60 MiB with 100 pods.
// List* are ListPodSandbox and ListContainers: the issue names the stats
// lists apart ("List*/Status/ListContainerStats"), and those read every
// container's counters, seconds with hundreds of pods on both runtimes.
func checkTargets(r *results) []targetCheck {
	var out []targetCheck
	add := func(name string, met bool, detail string, args ...any) {
		out = append(out, targetCheck{Name: name, Met: met, Detail: fmt.Sprintf(detail, args...)})
	}
	for _, h := range r.handlers() {
		if o, ok := r.op(h, "whole pod start"); ok {
			add(h+": whole pod start p50 ≤ 0.95×", o.RatioP50 <= 0.95, "%.2f×", o.RatioP50)
			add(h+": whole pod start p99 ≤ 1.00×", o.RatioP99 <= 1.00, "%.2f×", o.RatioP99)
		}
		for _, o := range r.Ops {
			if o.Handler == h && strings.HasSuffix(o.Op, "pods started in parallel") {
				add(h+": "+o.Op+" ≤ 1.00×", o.RatioP50 <= 1.00, "%.2f×", o.RatioP50)
			}
		}
		for _, op := range []string{"CreateContainer", "RemoveContainer"} {
			if o, ok := r.op(h, op); ok {
				add(h+": "+op+" ≤ 1.00×", o.RatioP50 <= 1.00, "%.2f×", o.RatioP50)
			}
		}
		var slow []string
		for _, o := range r.Ops {
			if o.Handler == h && o.RatioP50 > 1.05 {
				slow = append(slow, fmt.Sprintf("%s %.2f×", o.Op, o.RatioP50))
			}
		}
		add(h+": no operation slower than 1.05× at p50", len(slow) == 0, "%s", orNone(slow))
		var lists []string
		listsMet, seen := true, false
		for _, o := range r.Ops {
			if o.Handler == h && (strings.HasPrefix(o.Op, "ListPodSandbox (") || strings.HasPrefix(o.Op, "ListContainers (")) && strings.HasSuffix(o.Op, "(500 pods)") {
				seen = true
				lists = append(lists, fmt.Sprintf("%s %s ms", strings.TrimSuffix(o.Op, " (500 pods)"), num(o.Crimux.P50)))
				listsMet = listsMet && o.Crimux.P50 < 5
			}
		}
		if seen {
			add(h+": List* with 500 pods under 5 ms (p50)", listsMet, "%s", strings.Join(lists, ", "))
		}
		for _, p := range r.Resources {
			if p.Handler == h && p.Pods == 100 {
				rss := p.Procs[procCrimux].RSSMiB
				add(h+": crimux RSS under 60 MiB with 100 pods", rss < 60, "%.1f MiB", rss)
			}
		}
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
