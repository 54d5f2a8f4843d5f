package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// What a handler's phases leave behind may go on after their last call
// returned: the sandboxes of a hundred removed gVisor pods exiting, both
// containerds collecting their snapshots. Timed with the next handler's
// phases, it would slow both runtimes by chance, one more than the other.
// So each handler's phases begin once the node is quiet; the wait is
// printed with the phase. In the first run with it the node was quiet
// within a second before each handler: it is a guard, and the slow runc
// lifecycles of the run before it, which it was written for, had some
// other cause.

const (
	settleBusy = 0.10             // the node is quiet under this CPU use ...
	settleOver = time.Second      // ... over this long
	settleMax  = 60 * time.Second // and is waited for at most this long
)

// settle waits until the node's CPU use over a second is under settleBusy,
// at most settleMax; it returns how long it waited and the last CPU use.
func settle() (time.Duration, float64, error) {
	start := time.Now()
	for {
		a, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(settleOver)
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		busy, err := cpuBusy(string(a), string(b))
		if err != nil {
			return 0, 0, err
		}
		if waited := time.Since(start); busy < settleBusy || waited >= settleMax {
			return waited, busy, nil
		}
	}
}

// cpuBusy is the share of CPU time, over all CPUs, spent neither idle nor
// waiting for I/O between two readings of /proc/stat.
func cpuBusy(before, after string) (float64, error) {
	a, err := cpuTimes(before)
	if err != nil {
		return 0, err
	}
	b, err := cpuTimes(after)
	if err != nil {
		return 0, err
	}
	var total, idle float64
	for i := range a {
		d := b[i] - a[i]
		total += d
		if i == 3 || i == 4 { // idle, iowait
			idle += d
		}
	}
	if total <= 0 {
		return 0, nil
	}
	return (total - idle) / total, nil
}

// cpuTimes are the first eight fields of /proc/stat's "cpu" line (user,
// nice, system, idle, iowait, irq, softirq, steal); guest time is already
// counted in user.
func cpuTimes(stat string) ([8]float64, error) {
	var out [8]float64
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		for i := range out {
			v, err := strconv.ParseFloat(f[i+1], 64)
			if err != nil {
				return out, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
			}
			out[i] = v
		}
		return out, nil
	}
	return out, errors.New("/proc/stat has no cpu line")
}
