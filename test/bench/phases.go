package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crimux/crimux/test/harness"
)

// measureHandler runs every phase for one handler: warm-up, serial pod
// lifecycles, parallel starts, and lists at growing pod counts.
func (b *bench) measureHandler(h string, res *results) error {
	waited, busy, err := settle()
	if err != nil {
		return fmt.Errorf("wait for a quiet node: %w", err)
	}
	phase("%s: node quiet after %s (CPU %.0f%% busy); warm-up", h, waited.Round(time.Second), busy*100)
	for i := range 2 {
		for _, t := range b.ordered(i) {
			p, err := b.startPod(t, h, "warmup", false)
			if p.id != "" {
				if rerr := b.removePod(t, p); err == nil {
					err = rerr
				}
			}
			if err != nil {
				return err
			}
		}
	}
	if err := b.serial(h); err != nil {
		return err
	}
	if err := b.parallelRounds(h); err != nil {
		return err
	}
	return b.scale(h, res)
}

func (b *bench) serial(h string) error {
	n := b.plan.iterations[h]
	phase("%s: %d pod lifecycles per runtime, interleaved", h, n)
	var profErr chan error
	if b.plan.profile {
		profErr = make(chan error, 1)
		go func() {
			profErr <- b.cpuProfile(20*time.Second, filepath.Join(b.plan.out, "crimux-cpu-"+h+".pprof"))
		}()
	}
	for i := range n {
		for _, t := range b.ordered(i) {
			if err := b.lifecycle(t, h); err != nil {
				return err
			}
		}
	}
	if profErr != nil {
		if err := <-profErr; err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		fmt.Printf("   crimux CPU profile: %s\n", filepath.Join(b.plan.out, "crimux-cpu-"+h+".pprof"))
	}
	return nil
}

func (b *bench) parallelRounds(h string) error {
	n, rounds := b.plan.parallel, b.plan.rounds[h]
	phase("%s: %d rounds of %d pods started at once", h, rounds, n)
	for i := range rounds {
		for _, t := range b.ordered(i) {
			if err := b.parallelRound(t, h, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// scale grows the pods on both runtimes level by level, and at each level
// times the list and status calls (interleaved) and reads crimux's memory
// and CPU; then removes every pod.
func (b *bench) scale(h string, res *results) error {
	have := map[string][]pod{}
	// Both runtimes' pods are made and removed at the same time: only the
	// list calls, run once all are there, are measured.
	defer func() {
		if b.leaveLast {
			return
		}
		var wg sync.WaitGroup
		for _, t := range b.targets {
			wg.Go(func() {
				if err := b.depopulate(t, have[t.name]); err != nil {
					fmt.Fprintf(os.Stderr, "bench: remove %s pods: %v\n", t.name, err)
				}
			})
		}
		wg.Wait()
	}()
	res.addResources(h, 0, b.targets)
	for _, level := range b.plan.levels[h] {
		phase("%s: %d pods on each runtime", h, level)
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, t := range b.targets {
			wg.Go(func() {
				mu.Lock()
				cur := have[t.name]
				mu.Unlock()
				got, err := b.populate(t, h, cur, level)
				mu.Lock()
				have[t.name] = got
				errs = append(errs, err)
				mu.Unlock()
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		// The list and status calls take a millisecond or less, where a
		// tenth of one is the node's noise: 100 samples put their p50
		// within a few percent. The stats lists take seconds with
		// hundreds of pods present on both runtimes (gVisor's are read
		// from each sandbox): fewer samples of them, and fewer as the
		// count grows, at least 5.
		costlyReps := min(b.plan.statsReps, b.plan.listReps)
		if level > 10 {
			costlyReps = min(max(costlyReps*10/level, 5), costlyReps)
		}
		for i := range b.plan.listReps {
			for _, t := range b.ordered(i) {
				for _, o := range listOps(t, have[t.name], i) {
					if o.costly && i >= costlyReps {
						continue
					}
					if err := b.timed(h, fmt.Sprintf("%s (%d pods)", o.op, level), t, o.f); err != nil {
						return err
					}
				}
			}
		}
		res.addResources(h, level, b.targets)
	}
	return nil
}

// usage is one process's resident memory and CPU time so far.
type usage struct {
	RSSMiB     float64 `json:"rss_mib"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// readUsage reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (CPU).
func readUsage(pid int) (usage, error) {
	var u usage
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			u.RSSMiB = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	if u.CPUSeconds, err = cpuSeconds(string(stat)); err != nil {
		return u, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return u, nil
}

// cpuSeconds is a process's CPU time from its /proc/<pid>/stat line: user
// and system time, its own (utime, stime) and that of the children it
// waited for (cutime, cstime: the CNI plugins a runtime runs, the shim
// start commands), in clock ticks of 1/100 s on Linux.
func cpuSeconds(stat string) (float64, error) {
	f := harness.StatFields(stat)
	if len(f) < 15 {
		return 0, fmt.Errorf("short stat line")
	}
	var ticks float64
	for _, i := range []int{11, 12, 13, 14} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("field %d: %w", i+3, err)
		}
		ticks += v
	}
	return ticks / 100, nil
}

var benchStart = time.Now()

// phase prints a phase's name with the time since the run started.
func phase(format string, args ...any) {
	fmt.Printf("== [%s] %s\n", time.Since(benchStart).Round(time.Second), fmt.Sprintf(format, args...))
}
