// Command bench compares crimux with containerd's built-in CRI plugin on the
// same node: it starts a containerd with its CRI plugin (its own root, state,
// socket and bridge; runc and gVisor's shim) and crimux on another containerd
// built from the same binaries, then runs the same CRI calls from one client
// against both sockets, alternating which goes first on every iteration.
//
// It reports p50/p90/p99 per operation, runtime and handler with the ratio
// crimux/containerd, crimux's RSS and CPU at 0, 100 and 500 pods, how list
// calls grow with the number of pods, and writes results.json, results.md and
// chart.svg to -out.
//
//	go run ./test/bench [-smoke] [-handlers runc,gvisor] [-out docs/bench] [-profile]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crimux/crimux/test/harness"
)

// plan is how much of each phase to run.
type plan struct {
	handlers   []string
	iterations map[string]int   // serial pod lifecycles per runtime
	parallel   int              // pods started at once
	rounds     map[string]int   // parallel rounds per runtime
	levels     map[string][]int // pods present for the list phase
	listReps   int              // list and status calls per level and runtime
	statsReps  int              // stats lists per runtime at 10 pods (fewer with more)
	profile    bool             // take a CPU profile of crimux in the serial phase
	out        string           // where results (and profiles) go
}

func main() {
	handlers := flag.String("handlers", "runc,gvisor", "handlers to measure (comma-separated)")
	out := flag.String("out", "_output/bench", "where results.json, results.md and chart.svg go")
	binDir := flag.String("bin-dir", "/usr/local/bin", "where containerd 2.x, the shims, runc and runsc are")
	smoke := flag.Bool("smoke", false, "a short run that checks the benchmark works (numbers are not meaningful)")
	profile := flag.Bool("profile", false, "save a CPU profile of crimux during each serial phase")
	iterations := flag.Int("iterations", 0, "serial pod lifecycles per runtime (0 = 60 for runc, 40 for gvisor)")
	levels := flag.String("levels", "runc=10,100,500;gvisor=10,100", "pods present for the list phase, per handler")
	flag.Parse()

	p := plan{
		handlers:   strings.Split(*handlers, ","),
		iterations: map[string]int{"runc": 60, "gvisor": 40},
		parallel:   10,
		// An odd count of rounds: the p50 is the middle one, not the
		// lower of the two middle ones.
		rounds:    map[string]int{"runc": 5, "gvisor": 5},
		listReps:  100,
		statsReps: 30,
		profile:   *profile,
	}
	var err error
	if p.levels, err = parseLevels(*levels); err != nil {
		fatal(err)
	}
	if *iterations > 0 {
		for _, h := range p.handlers {
			p.iterations[h] = *iterations
		}
	}
	if *smoke {
		p.iterations = map[string]int{"runc": 3, "gvisor": 3}
		p.rounds = map[string]int{"runc": 1, "gvisor": 1}
		p.parallel = 3
		p.levels = map[string][]int{"runc": {5}, "gvisor": {3}}
		p.listReps = 3
		p.statsReps = 3
	}
	p.out, _ = filepath.Abs(*out)
	if err := run(p, *binDir); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// parseLevels reads "runc=10,100,500;gvisor=10,100".
func parseLevels(s string) (map[string][]int, error) {
	out := map[string][]int{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		h, list, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("-levels %q: want handler=n,n,...", part)
		}
		for _, f := range strings.Split(list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("-levels %q: %q is not a positive count", part, f)
			}
			out[strings.TrimSpace(h)] = append(out[strings.TrimSpace(h)], n)
		}
	}
	return out, nil
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func run(p plan, binDir string) error {
	start := time.Now()
	env, err := harness.Start(harness.Options{RepoRoot: repoRoot(), BinDir: binDir, LogLevel: "info", Release: true, WideSubnets: true})
	if err != nil {
		return err
	}
	defer env.Stop()
	// crimux's log is kept with the results (the run's dir goes with it).
	defer func() {
		if b, err := os.ReadFile(filepath.Join(env.Dir, "crimux.log")); err == nil {
			_ = os.MkdirAll(p.out, 0o755)
			_ = os.WriteFile(filepath.Join(p.out, "crimux.log"), b, 0o644)
		}
	}()
	cc, err := env.StartContainerdCRI("b")
	if err != nil {
		return err
	}
	defer cc.Stop()
	b := newBench(env, cc, p)
	if err := b.pullImages(context.Background()); err != nil {
		b.removeAll()
		return err
	}
	res := newResults(b, p)
	// The handler with the most pods in its scale phase goes last: its
	// last level's pods are left to the teardown of both runtimes.
	order := slices.Clone(p.handlers)
	sort.SliceStable(order, func(i, j int) bool {
		return slices.Max(append([]int{0}, p.levels[order[i]]...)) < slices.Max(append([]int{0}, p.levels[order[j]]...))
	})
	for i, h := range order {
		b.leaveLast = i == len(order)-1
		if err := b.measureHandler(h, res); err != nil {
			b.leaveLast = false
			b.removeAll()
			return fmt.Errorf("handler %s: %w", h, err)
		}
	}
	res.collect(b)
	res.Duration = time.Since(start).Round(time.Second).String()
	if err := res.write(p.out); err != nil {
		return err
	}
	fmt.Print(res.markdown())
	fmt.Printf("\nwrote %s/{results.json,results.md,chart.svg} in %s\n", p.out, res.Duration)
	return nil
}
