package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
)

// An image volume mounts another image's root filesystem read-only.
func TestImageVolume(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	ref, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.EntrypointEcho}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "imgvol")
	podID := runPod(t, pod)
	c := ctrConfig("c", "sleep", "3600")
	c.Mounts = []*runtime.Mount{{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: harness.EntrypointEcho}, ImageSubPath: "bin"}}
	id := startContainer(t, podID, pod, c)
	resp, err := rawExecSync(t, id, []string{"sh", "-c", "test -x /iv/busybox && ! touch /iv/x"}, 10)
	if err != nil || resp.ExitCode != 0 {
		t.Errorf("image volume not mounted read-only: %v %v %s", resp, err, resp.GetStderr())
	}
	st := containerState(t, id)
	if len(st.Mounts) != 1 || st.Mounts[0].GetImage().GetImageRef() != ref {
		t.Errorf("status mounts %+v, want image ref %s", st.Mounts, ref)
	}
	bad := ctrConfig("rw", "true")
	bad.Mounts = []*runtime.Mount{{ContainerPath: "/iv", Image: &runtime.ImageSpec{Image: harness.EntrypointEcho}}}
	if _, err := env.Runtime.CreateContainer(ctx(t), podID, bad, pod); status.Code(err) != codes.InvalidArgument {
		t.Errorf("writable image volume: %v", err)
	}
	missing := ctrConfig("missing", "true")
	missing.Mounts = []*runtime.Mount{{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: harness.EntrypointEcho}, ImageSubPath: "no/such/dir"}}
	if _, err := env.Runtime.CreateContainer(ctx(t), podID, missing, pod); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("missing sub path: %v", err)
	}
	if err := env.Runtime.RemoveContainer(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if ms := harness.MountsUnder(filepath.Join(env.Dir, "state", "imagevols")); len(ms) != 0 {
		t.Errorf("image volume mounts left: %v", ms)
	}
}

// A recursive read-only mount makes submounts read-only too, where the
// handler supports it; elsewhere it is refused.
func TestRecursiveReadOnlyMount(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(sub, unix.MNT_DETACH)
	pod := podConfig(t, "rro")
	podID := runPod(t, pod)
	c := ctrConfig("c", "sleep", "3600")
	c.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: dir, Readonly: true, RecursiveReadOnly: true}}
	st, _ := env.Runtime.Status(ctx(t), false)
	supported := false
	for _, h := range st.RuntimeHandlers {
		if h.Name == env.Handler || (env.Handler == "" && h.Name == "") {
			supported = h.Features.GetRecursiveReadOnlyMounts()
		}
	}
	cid, err := env.Runtime.CreateContainer(ctx(t), podID, c, pod)
	if !supported {
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("rro on a handler without it: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Runtime.StartContainer(ctx(t), cid); err != nil {
		t.Fatal(err)
	}
	resp, err := rawExecSync(t, cid, []string{"touch", "/data/sub/x"}, 10)
	if err != nil || resp.ExitCode == 0 {
		t.Errorf("submount of a recursive read-only mount is writable: %v %v", resp, err)
	}
	bad := ctrConfig("bad", "true")
	bad.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: dir, RecursiveReadOnly: true}}
	if _, err := env.Runtime.CreateContainer(ctx(t), podID, bad, pod); status.Code(err) != codes.InvalidArgument {
		t.Errorf("rro without readonly: %v", err)
	}
}

// ListMetricDescriptors and ListPodSandboxMetrics agree, and a running
// container's metrics carry values.
func TestPodSandboxMetrics(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	descs, err := env.Runtime.ListMetricDescriptors(ctx(t))
	if err != nil || len(descs) == 0 {
		t.Fatalf("descriptors: %v %v", descs, err)
	}
	keys := map[string]int{}
	for _, d := range descs {
		keys[d.Name] = len(d.LabelKeys)
	}
	pod := podConfig(t, "metrics")
	podID := runPod(t, pod)
	startContainer(t, podID, pod, ctrConfig("c", "sh", "-c", "while true; do :; done"))
	time.Sleep(1500 * time.Millisecond)
	all, err := env.Runtime.ListPodSandboxMetrics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, pm := range all {
		if pm.PodSandboxId != podID {
			continue
		}
		seen := map[string]uint64{}
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				if n, ok := keys[m.Name]; !ok || n != len(m.LabelValues) {
					t.Errorf("metric %s: %d label values, descriptor has %d (known %v)", m.Name, len(m.LabelValues), n, ok)
				}
				seen[m.Name] += m.Value.GetValue()
			}
		}
		for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds", "container_network_receive_packets_total"} {
			if _, ok := seen[name]; !ok {
				t.Errorf("no %s", name)
			}
		}
		if seen["container_memory_working_set_bytes"] == 0 {
			t.Errorf("working set is zero")
		}
		return
	}
	t.Fatalf("no metrics for pod %s", podID)
}
