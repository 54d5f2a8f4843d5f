package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

// series is one scrape of /metrics: each series' labels and value by name.
type series map[string][]sample

type sample struct {
	labels map[string]string
	value  float64
}

// scrape reads crimux's /metrics (the Prometheus text format).
func scrape(t *testing.T) series {
	t.Helper()
	resp, err := http.Get("http://" + env.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s %s: %.200s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	out := series{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		labels := map[string]string{}
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			name, rest = line[:i], line[j+1:]
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, _ := strings.Cut(kv, "=")
				labels[k], _ = strconv.Unquote(v)
			}
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[name] = append(out[name], sample{labels, v})
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == ',' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// get adds up the series of name whose labels include want.
func (s series) get(name string, want map[string]string) float64 {
	total := 0.0
	for _, smp := range s[name] {
		ok := true
		for k, v := range want {
			ok = ok && smp.labels[k] == v
		}
		if ok {
			total += smp.value
		}
	}
	return total
}

type l = map[string]string

// The Prometheus endpoint: after a pod's life, each of crimux's metrics
// moved as it should — calls by method, handler and code with their
// latency, pods and containers by handler and state, CNI ADD and DEL, an
// image pull, an OOM kill (for gVisor, by crimux's memory guard), the exit
// watchers following containerd again after it restarted — and the Go
// runtime's and process's metrics are there.
func TestPrometheusMetrics(t *testing.T) {
	needEnv(t)
	h := env.Handler
	if h == "" {
		h = "runc"
	}
	before := scrape(t)
	if _, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.Busybox}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "metrics")
	id := runPod(t, pod)
	sleeper := startContainer(t, id, pod, ctrConfig("sleeper", "sleep", "3600"))
	if _, err := env.Runtime.ContainerStatus(ctx(t), "no-such-container", false); status.Code(err) != codes.NotFound {
		t.Fatalf("ContainerStatus of an unknown ID: %v", err)
	}
	during := scrape(t)
	moved := func(what, name string, labels l, min float64, a, b series) {
		t.Helper()
		if d := b.get(name, labels) - a.get(name, labels); d < min {
			t.Errorf("%s: %s%v moved by %v, want at least %v", what, name, labels, d, min)
		}
	}
	moved("RunPodSandbox counted", "crimux_cri_requests_total", l{"method": "RunPodSandbox", "handler": h, "code": "OK"}, 1, before, during)
	moved("RunPodSandbox timed", "crimux_cri_request_duration_seconds_count", l{"method": "RunPodSandbox", "handler": h}, 1, before, during)
	moved("StartContainer counted under the pod's handler", "crimux_cri_requests_total", l{"method": "StartContainer", "handler": h, "code": "OK"}, 1, before, during)
	moved("a NotFound counted", "crimux_cri_requests_total", l{"method": "ContainerStatus", "code": "NotFound"}, 1, before, during)
	moved("PullImage counted", "crimux_image_pulls_total", l{"handler": "", "result": "success"}, 1, before, during)
	moved("pulled bytes", "crimux_image_pull_bytes_total", l{"handler": ""}, 1, before, during)
	moved("pull timed", "crimux_image_pull_duration_seconds_count", l{"handler": ""}, 1, before, during)
	moved("a ready pod", "crimux_pods", l{"handler": h, "state": "ready"}, 1, before, during)
	moved("a running container", "crimux_containers", l{"handler": h, "state": "running"}, 1, before, during)
	moved("CNI ADD timed", "crimux_cni_operation_duration_seconds_count", l{"operation": "add"}, 1, before, during)
	if during.get("crimux_cri_request_duration_seconds_bucket", l{"method": "RunPodSandbox", "handler": h, "le": "+Inf"}) < 1 {
		t.Error("RunPodSandbox's latency histogram has no +Inf bucket")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if len(during[name]) == 0 || during.get(name, nil) <= 0 {
			t.Errorf("%s missing or zero", name)
		}
	}

	// An OOM kill: the kernel's under runc, crimux's memory guard under gVisor.
	hog := ctrConfig("hog", "tail", "/dev/zero")
	hog.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, MemorySwapLimitInBytes: 32 << 20}
	if st := waitExited(t, startContainer(t, id, pod, hog)); st.Reason != "OOMKilled" {
		t.Fatalf("hog: reason %q", st.Reason)
	}
	// containerd restarts under a running container: the event stream and
	// the container's exit wait are followed again.
	env.KillContainerd()
	time.Sleep(time.Second)
	if err := env.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "exit watchers followed again", func() error {
		s := scrape(t)
		for _, stream := range []string{"events", "task"} {
			if s.get("crimux_exit_watch_reconnects_total", l{"driver": "containerd", "stream": stream}) <= before.get("crimux_exit_watch_reconnects_total", l{"driver": "containerd", "stream": stream}) {
				return fmt.Errorf("stream %s not counted", stream)
			}
		}
		return nil
	})
	eventually(t, time.Minute, "containerd answering crimux again", func() error {
		_, _, err := env.Runtime.ExecSync(ctx(t), sleeper, []string{"true"}, 10*time.Second)
		return err
	})
	if err := env.Runtime.StopPodSandbox(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	after := scrape(t)
	moved("the OOM kill", "crimux_oom_events_total", l{"handler": h}, 1, during, after)
	if isGvisor() {
		moved("the memory guard's samples", "crimux_gvisor_memory_samples_total", l{"handler": h}, 1, during, after)
		moved("the memory guard's kill", "crimux_gvisor_memory_kills_total", l{"handler": h}, 1, during, after)
	}
	moved("CNI DEL timed", "crimux_cni_operation_duration_seconds_count", l{"operation": "del"}, 1, during, after)
	moved("the stopped pod", "crimux_pods", l{"handler": h, "state": "notready"}, 1, during, after)
	moved("the exited containers", "crimux_containers", l{"handler": h, "state": "exited"}, 2, during, after)
	if after.get("crimux_containers", l{"handler": h, "state": "running"}) >= during.get("crimux_containers", l{"handler": h, "state": "running"}) {
		t.Error("running containers did not go down after the stop")
	}
}
