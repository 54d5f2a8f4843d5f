package main

import (
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 3, 4, 567891234, time.UTC)
	for format, want := range map[string]string{
		"%3t":     "02:03:04.567",
		"%t":      "02:03:04",
		"at %6t!": "at 02:03:04.567891!",
		"100%":    "100%",
		"%x %3t":  "%x 02:03:04.567",
	} {
		if got := render(format, now); got != want {
			t.Errorf("render(%q) = %q, want %q", format, got, want)
		}
	}
}
