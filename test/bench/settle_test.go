package main

import (
	"math"
	"testing"
)

// The node's CPU use between two /proc/stat readings: the time not spent
// idle or waiting for I/O, over all of it, from the "cpu" line (all CPUs).
func TestCPUBusyBetweenTwoReadings(t *testing.T) {
	before := "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 500 0 250 4000 50 0 0 0 0 0\nintr 1\n"
	after := "cpu  1150 10 540 8700 150 0 0 0 0 0\ncpu0 575 5 270 4350 75 0 0 0 0 0\nintr 2\n"
	got, err := cpuBusy(before, after)
	if err != nil {
		t.Fatal(err)
	}
	// busy 150+10+40 = 200 of 200+700+50 = 950
	if want := 200.0 / 950.0; math.Abs(got-want) > 1e-9 {
		t.Errorf("busy = %v, want %v", got, want)
	}
	if _, err := cpuBusy("intr 1\n", after); err == nil {
		t.Error("a reading without a cpu line: no error")
	}
	if got, err := cpuBusy(before, before); err != nil || got != 0 {
		t.Errorf("no time passed: busy %v, err %v; want 0", got, err)
	}
}
