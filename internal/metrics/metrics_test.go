package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
)

// Every metric the Grafana dashboard in contrib/ queries is one crimux
// serves (a renamed metric would leave a panel empty without a word).
func TestGrafanaDashboardNamesExist(t *testing.T) {
	b, err := os.ReadFile("../../contrib/grafana/crimux-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	names := Names()
	// A metric name in PromQL: followed by a selector, a range or the end
	// of the argument; label names and functions are not followed by "{".
	metric := regexp.MustCompile(`\b((?:crimux|process|go)_[a-z0-9_]+)\s*[{\[)]`)
	seen := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			ms := metric.FindAllStringSubmatch(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: no metric found in %q", p.Title, tg.Expr)
			}
			for _, m := range ms {
				seen++
				if !slices.Contains(names, m[1]) {
					t.Errorf("panel %q queries %s, which crimux does not serve", p.Title, m[1])
				}
			}
		}
	}
	if seen < 10 {
		t.Errorf("only %d metric references found in the dashboard", seen)
	}
	for _, want := range []string{"crimux_cri_requests_total", "crimux_cri_request_duration_seconds_bucket", "crimux_pods", "crimux_containers", "go_goroutines", "process_resident_memory_bytes"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names lacks %s: %v", want, names)
		}
	}
}
