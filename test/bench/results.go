package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// stats are a sample's percentiles in milliseconds.
type stats struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Mean float64 `json:"mean_ms"`
}

// opResult is one operation on one handler, both runtimes.
type opResult struct {
	Handler    string  `json:"handler"`
	Op         string  `json:"op"`
	Containerd stats   `json:"containerd"`
	Crimux     stats   `json:"crimux"`
	RatioP50   float64 `json:"ratio_p50"`
	RatioP99   float64 `json:"ratio_p99"`
}

// resourcePoint is what the runtimes' processes use with Pods pods present.
type resourcePoint struct {
	Handler string           `json:"handler"`
	Pods    int              `json:"pods"`
	Procs   map[string]usage `json:"processes"`
}

type results struct {
	Date      string            `json:"date"`
	Duration  string            `json:"duration"`
	Machine   map[string]string `json:"machine"`
	Plan      map[string]any    `json:"plan"`
	Ops       []opResult        `json:"operations"`
	Resources []resourcePoint   `json:"resources"`
	Targets   []targetCheck     `json:"targets"`
}

func newResults(b *bench, p plan) *results {
	return &results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machineInfo(b.env.BinDir),
		Plan: map[string]any{
			"handlers": p.handlers, "serial_iterations": p.iterations, "parallel_pods": p.parallel,
			"parallel_rounds": p.rounds, "list_levels": p.levels, "list_reps": p.listReps, "stats_reps": p.statsReps,
		},
	}
}

func machineInfo(binDir string) map[string]string {
	m := map[string]string{"cores": fmt.Sprint(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		_, _ = fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %f kB", &kb)
		m["memory"] = fmt.Sprintf("%.0f GiB", kb/1024/1024)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	// The binaries both runtimes run: those in binDir.
	for _, name := range []string{"containerd", "runc", "runsc"} {
		if out, err := exec.Command(filepath.Join(binDir, name), "--version").Output(); err == nil {
			m[name] = versionLine(string(out))
		}
	}
	if out, err := exec.Command("git", "-C", repoRoot(), "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		m["crimux"] = strings.TrimSpace(string(out))
	}
	return m
}

// versionLine is the first line of a binary's --version output. runsc
// built with go build (as make deps builds it from the module proxy) has no
// version stamped and prints VERSION_MISSING: say so in words.
func versionLine(out string) string {
	line := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
	if strings.Contains(line, "VERSION_MISSING") {
		return strings.Replace(line, "version VERSION_MISSING", "with no version stamped (go build from the module proxy, as make deps builds it)", 1)
	}
	return line
}

func (r *results) addResources(handler string, pods int, targets []*target) {
	rp := resourcePoint{Handler: handler, Pods: pods, Procs: map[string]usage{}}
	for _, t := range targets {
		for name, pid := range t.pids {
			if u, err := readUsage(pid); err == nil {
				rp.Procs[name] = u
			}
		}
	}
	r.Resources = append(r.Resources, rp)
}

func percentiles(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return ms(s[i])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return stats{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Mean: ms(sum / time.Duration(len(s)))}
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

// collect turns the samples into results and checks the targets.
func (r *results) collect(b *bench) {
	for _, key := range b.order {
		h, op, _ := strings.Cut(key, "/")
		c, x := percentiles(b.samples[key][rtContainerd]), percentiles(b.samples[key][rtCrimux])
		r.Ops = append(r.Ops, opResult{Handler: h, Op: op, Containerd: c, Crimux: x,
			RatioP50: ratio(x.P50, c.P50), RatioP99: ratio(x.P99, c.P99)})
	}
	r.Targets = checkTargets(r)
}

func (r *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(r.chart()), 0o644)
}

func (r *results) handlers() []string {
	var hs []string
	seen := map[string]bool{}
	for _, o := range r.Ops {
		if !seen[o.Handler] {
			seen[o.Handler] = true
			hs = append(hs, o.Handler)
		}
	}
	return hs
}

func (r *results) op(h, op string) (opResult, bool) {
	for _, o := range r.Ops {
		if o.Handler == h && o.Op == op {
			return o, true
		}
	}
	return opResult{}, false
}

// isList tells the list phase's operations ("X (N pods)") from the rest.
func isList(op string) bool { return strings.HasSuffix(op, " pods)") }

func (r *results) markdown() string {
	var sb strings.Builder
	hs := r.handlers()
	fmt.Fprintf(&sb, "Run %s (%s) on %s cores (%s), %s, kernel %s; %s, %s, %s; crimux %s.\n\n",
		r.Date, r.Duration, r.Machine["cores"], r.Machine["cpu"], r.Machine["memory"], r.Machine["kernel"],
		r.Machine["containerd"], r.Machine["runc"], r.Machine["runsc"], r.Machine["crimux"])
	sb.WriteString("p50 in ms; ratio = crimux / containerd's CRI (below 1: crimux is faster).\n\n")
	sb.WriteString("| operation |")
	for _, h := range hs {
		fmt.Fprintf(&sb, " %s: containerd | crimux | ratio |", h)
	}
	sb.WriteString("\n|---|")
	for range hs {
		sb.WriteString("---:|---:|---:|")
	}
	sb.WriteString("\n")
	for _, op := range r.opNames(false) {
		fmt.Fprintf(&sb, "| %s |", op)
		for _, h := range hs {
			if o, ok := r.op(h, op); ok {
				fmt.Fprintf(&sb, " %s | %s | %s |", num(o.Containerd.P50), num(o.Crimux.P50), bold(o.RatioP50))
			} else {
				sb.WriteString(" | | |")
			}
		}
		sb.WriteString("\n")
	}
	sb.WriteString("\nPercentiles (ms), containerd's CRI / crimux:\n\n| handler | operation | n | p50 | p90 | p99 | ratio p50 | ratio p99 |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, o := range r.Ops {
		if isList(o.Op) {
			continue
		}
		fmt.Fprintf(&sb, "| %s | %s | %d | %s / %s | %s / %s | %s / %s | %.2f | %.2f |\n", o.Handler, o.Op, o.Crimux.N,
			num(o.Containerd.P50), num(o.Crimux.P50), num(o.Containerd.P90), num(o.Crimux.P90),
			num(o.Containerd.P99), num(o.Crimux.P99), o.RatioP50, o.RatioP99)
	}
	r.listTable(&sb, hs)
	r.resourceTable(&sb)
	sb.WriteString("\nTargets:\n\n")
	for _, t := range r.Targets {
		mark := "met"
		if !t.Met {
			mark = "**missed**"
		}
		fmt.Fprintf(&sb, "- %s: %s (%s)\n", t.Name, mark, t.Detail)
	}
	return sb.String()
}

// opNames are the operations in first-seen order, the list phase's or the rest.
func (r *results) opNames(lists bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range r.Ops {
		if isList(o.Op) == lists && !seen[o.Op] {
			seen[o.Op] = true
			out = append(out, o.Op)
		}
	}
	return out
}

// listTable shows how list and status calls grow with the pods present (p50).
func (r *results) listTable(sb *strings.Builder, hs []string) {
	sb.WriteString("\nList and status calls by pods present, p50 ms (containerd's CRI / crimux):\n\n| handler | operation |")
	type col struct {
		h string
		n int
	}
	levels := map[string][]int{}
	for _, o := range r.Ops {
		if !isList(o.Op) {
			continue
		}
		var n int
		_, _ = fmt.Sscanf(o.Op[strings.LastIndexByte(o.Op, '(')+1:], "%d pods)", &n)
		if !containsInt(levels[o.Handler], n) {
			levels[o.Handler] = append(levels[o.Handler], n)
		}
	}
	maxLevels := 0
	for _, l := range levels {
		maxLevels = max(maxLevels, len(l))
	}
	for i := range maxLevels {
		fmt.Fprintf(sb, " level %d |", i+1)
	}
	sb.WriteString("\n|---|---|" + strings.Repeat("---:|", maxLevels) + "\n")
	for _, h := range hs {
		for _, base := range []string{"ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats", "PodSandboxStatus", "ContainerStatus"} {
			fmt.Fprintf(sb, "| %s | %s |", h, base)
			for _, n := range levels[h] {
				if o, ok := r.op(h, fmt.Sprintf("%s (%d pods)", base, n)); ok {
					fmt.Fprintf(sb, " %d pods: %s / %s |", n, num(o.Containerd.P50), num(o.Crimux.P50))
				}
			}
			sb.WriteString(strings.Repeat(" |", maxLevels-len(levels[h])) + "\n")
		}
	}
}

func (r *results) resourceTable(sb *strings.Builder) {
	sb.WriteString("\nMemory (RSS, MiB) and CPU time (s since the run started, the children each process waited for included: CNI plugins, shim start commands) with pods present. crimux's cost is crimux and the containerd it drives together (\"crimux + containerd\"), against containerd with its CRI plugin:\n\n" +
		"| handler | pods | crimux RSS | crimux CPU | its containerd RSS | its containerd CPU | crimux + containerd RSS | crimux + containerd CPU | containerd with CRI RSS | containerd with CRI CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Resources {
		c, cc, ci := p.Procs[procCrimux], p.Procs[procCrimuxContainerd], p.Procs[procContainerdCRI]
		fmt.Fprintf(sb, "| %s | %d | %.1f | %.2f | %.1f | %.2f | %.1f | %.2f | %.1f | %.2f |\n", p.Handler, p.Pods,
			c.RSSMiB, c.CPUSeconds, cc.RSSMiB, cc.CPUSeconds, c.RSSMiB+cc.RSSMiB, c.CPUSeconds+cc.CPUSeconds, ci.RSSMiB, ci.CPUSeconds)
	}
}

func containsInt(s []int, n int) bool {
	for _, v := range s {
		if v == n {
			return true
		}
	}
	return false
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func bold(r float64) string {
	if r > 1.05 {
		return fmt.Sprintf("**%.2f**", r)
	}
	return fmt.Sprintf("%.2f", r)
}
