// Command critest runs the Kubernetes CRI validation suite (critest, from
// sigs.k8s.io/cri-tools) against a crimux of its own, once per handler, fully
// offline: it starts containerd and crimux with the integration harness, builds
// the images critest pulls and serves them from a local registry that crimux's
// mirror configuration redirects critest's registries to. It writes the junit
// report, prints "N passed, N failed, N skipped", and fails on any failure.
//
//	go run ./test/critest -handler runc [-benchmark] [-critest /usr/local/bin/critest]
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/crimux/crimux/test/harness"
	"github.com/crimux/crimux/test/images"
	"github.com/crimux/crimux/test/skiplist"
)

func main() {
	handler := flag.String("handler", "runc", "runtime handler critest runs pods with")
	critestBin := flag.String("critest", "/usr/local/bin/critest", "the critest binary (make critest-bin builds it)")
	binDir := flag.String("bin-dir", "/usr/local/bin", "where containerd 2.x and the shims are")
	skipFile := flag.String("skip-list", "", "skip list (default test/critest/skip.txt)")
	outDir := flag.String("out", "_output/critest", "where the junit report and logs go")
	benchmark := flag.Bool("benchmark", false, "run critest -benchmark instead of the validation suite")
	focus := flag.String("focus", "", "only specs matching this regexp (for debugging)")
	flag.Parse()
	repo := repoRoot()
	if *skipFile == "" {
		*skipFile = filepath.Join(repo, "test", "critest", "skip.txt")
	}
	code, err := run(repo, *handler, *critestBin, *binDir, *skipFile, *outDir, *focus, *benchmark)
	if err != nil {
		fmt.Fprintf(os.Stderr, "critest: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func run(repo, handler, critestBin, binDir, skipFile, outDir, focus string, benchmark bool) (int, error) {
	if _, err := os.Stat(critestBin); err != nil {
		return 0, fmt.Errorf("critest binary: %w (make critest-bin builds it)", err)
	}
	all, err := skiplist.Read(skipFile)
	skips := skiplist.For(all, handler)
	if err != nil {
		return 0, err
	}
	progs, err := os.MkdirTemp("", "critest-progs-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(progs)
	if err := buildProgs(repo, progs); err != nil {
		return 0, err
	}
	imgs, err := critestImages(progs)
	if err != nil {
		return 0, err
	}
	// The forwarded handler forwards to containerd's own CRI (its runc
	// handler), which critest also runs against directly, as the baseline.
	forward := handler == harness.FwdHandler
	envHandler := handler
	if forward {
		envHandler = "runc"
	}
	env, err := harness.Start(harness.Options{
		RepoRoot: repo, BinDir: binDir, Handler: envHandler, MirrorHosts: mirrorHosts, LogLevel: "info", Forward: forward,
		ExtraImages: func(reg *images.Registry) error {
			for path, img := range imgs {
				if _, err := reg.Push(path, img); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	defer env.Stop()
	abs, _ := filepath.Abs(outDir)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return 0, err
	}
	name := "critest-" + handler
	if benchmark {
		name = "critest-bench-" + handler
	}
	var direct *result
	if forward && !benchmark {
		// The same specs, skips and images against the remote itself.
		r, err := runCritest(critestBin, abs, name+"-direct", env.Remote.Socket, "runc", skips, focus, nil)
		if err != nil {
			return 0, err
		}
		fmt.Printf("critest directly against the remote (containerd's CRI, handler runc): %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
		direct = &r
	}
	var extra []string
	if benchmark {
		out := filepath.Join(abs, name)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return 0, err
		}
		extra = []string{"-benchmark", "-benchmarking-output-dir", out,
			"-benchmarking-params-file", filepath.Join(repo, "test", "critest", "benchmark.yaml")}
	}
	r, err := runCritest(critestBin, abs, name, env.Socket, handler, skips, focus, extra)
	_ = os.WriteFile(filepath.Join(abs, name+".crimux.log"), []byte(env.Logs()), 0o644)
	if err != nil {
		return 0, err
	}
	for _, f := range r.failures {
		fmt.Printf("FAILED: %s\n", f)
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
	if direct != nil {
		// Through crimux, nothing may fail that passed against the remote,
		// and at least as many specs pass.
		baseline := map[string]bool{}
		for _, f := range direct.failures {
			baseline[f] = true
		}
		newFailures := 0
		for _, f := range r.failures {
			if !baseline[f] {
				newFailures++
				fmt.Printf("FAILED through crimux only: %s\n", f)
			}
		}
		fmt.Printf("through crimux %d passed, directly %d passed; %d failed through crimux only\n", r.passed, direct.passed, newFailures)
		if newFailures > 0 || r.passed < direct.passed {
			return 1, nil
		}
		return 0, nil
	}
	if r.failed > 0 {
		return 1, nil
	}
	return 0, nil
}

// result is one critest run's outcome.
type result struct {
	passed, failed, skipped int
	failures                []string
}

// runCritest runs critest against socket with handler, writing
// <name>.xml and <name>.log under abs.
func runCritest(critestBin, abs, name, socket, handler string, skips []skiplist.Entry, focus string, extra []string) (result, error) {
	report := filepath.Join(abs, name+".xml")
	args := []string{
		"-runtime-endpoint", "unix://" + socket,
		"-image-endpoint", "unix://" + socket,
		"-runtime-handler", handler,
		"-ginkgo.junit-report", report,
		"-ginkgo.no-color",
	}
	args = append(args, extra...)
	var pats []string
	for _, s := range skips {
		pats = append(pats, s.Regexp)
	}
	if len(pats) > 0 {
		args = append(args, "-ginkgo.skip", strings.Join(pats, "|"))
	}
	if focus != "" {
		args = append(args, "-ginkgo.focus", focus)
	}
	logPath := filepath.Join(abs, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer lf.Close()
	cmd := exec.Command(critestBin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = abs
	start := time.Now()
	fmt.Printf("running critest for handler %s on %s (log: %s)\n", handler, socket, logPath)
	runErr := cmd.Run()
	var r result
	r.passed, r.failed, r.skipped, r.failures, err = parseReport(report)
	if err != nil {
		return r, fmt.Errorf("critest did not write a report (%v): %w; see %s", runErr, err, logPath)
	}
	fmt.Printf("critest %s took %s; report %s\n", name, time.Since(start).Round(time.Second), report)
	return r, nil
}

type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Status  string    `xml:"status,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseReport(path string) (passed, failed, skipped int, failures []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	var j junit
	if err := xml.Unmarshal(b, &j); err != nil {
		return 0, 0, 0, nil, err
	}
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			// Ginkgo's suite-level setup nodes are not specs.
			if strings.HasPrefix(c.Name, "[SynchronizedBeforeSuite]") || strings.HasPrefix(c.Name, "[BeforeSuite]") ||
				strings.HasPrefix(c.Name, "[AfterSuite]") || strings.HasPrefix(c.Name, "[SynchronizedAfterSuite]") || strings.HasPrefix(c.Name, "[ReportAfterSuite]") {
				if c.Failure != nil || c.Error != nil {
					failed++
					failures = append(failures, c.Name)
				}
				continue
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				failed++
				failures = append(failures, c.Name)
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				skipped++
			default:
				passed++
			}
		}
	}
	sort.Strings(failures)
	return passed, failed, skipped, failures, nil
}
