package test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod with two containers: a web server with a host port and a client that
// reaches it over the pod's shared localhost; IPs, logs, exec, stats, and a
// stop/remove that leaves nothing behind.
func TestPodTwoContainers(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "two")
	hostPort := int32(20000 + time.Now().Nanosecond()%20000)
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: hostPort}}
	podID := runPod(t, pod)

	web := ctrConfig("web", "sh", "-c", "mkdir -p /www && echo hello-$(hostname) > /www/index.html && echo web-ready && echo to-stderr >&2 && exec httpd -f -p 80 -h /www")
	webID := startContainer(t, podID, pod, web)
	client := ctrConfig("client", "sh", "-c", "until wget -qO- http://127.0.0.1:80/; do sleep 0.2; done; echo client-done; sleep 3600")
	clientID := startContainer(t, podID, pod, client)

	ip := podIP(t, podID)
	eventually(t, 30*time.Second, "web reachable on the pod IP", func() error {
		body, err := httpGet("http://" + ip + "/")
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "hello-two" {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})
	eventually(t, 30*time.Second, "host port mapping reachable from the host", func() error {
		body, err := httpGet(fmt.Sprintf("http://%s:%d/", env.Gateway, hostPort))
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "hello-two" {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})

	// Logs in the CRI format under the pod's log directory.
	eventually(t, 30*time.Second, "client log", func() error {
		b, err := os.ReadFile(filepath.Join(pod.LogDirectory, "client.log"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), " stdout F client-done") || !strings.Contains(string(b), " stdout F hello-two") {
			return fmt.Errorf("log: %q", b)
		}
		return nil
	})
	lines := logLines(t, filepath.Join(pod.LogDirectory, "web.log"))
	var sawOut, sawErr bool
	for _, l := range lines {
		sawOut = sawOut || (l == [3]string{"stdout", "F", "web-ready"})
		sawErr = sawErr || (l == [3]string{"stderr", "F", "to-stderr"})
	}
	if !sawOut || !sawErr {
		t.Errorf("web log lacks stdout/stderr lines: %v", lines)
	}

	// Exec: output and exit code.
	stdout, stderr, err := env.Runtime.ExecSync(ctx(t), clientID, []string{"sh", "-c", "echo out; echo err >&2; cat /etc/hostname"}, 10*time.Second)
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if string(stdout) != "out\ntwo\n" || string(stderr) != "err\n" {
		t.Errorf("ExecSync output %q / %q", stdout, stderr)
	}
	resp, err := rawExecSync(t, clientID, []string{"sh", "-c", "exit 7"}, 10)
	if err != nil || resp.ExitCode != 7 {
		t.Errorf("ExecSync exit code: %v %v", resp, err)
	}

	// Status details.
	st := containerState(t, webID)
	if st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 || st.ImageRef == "" || st.LogPath != filepath.Join(pod.LogDirectory, "web.log") {
		t.Errorf("web status: %+v", st)
	}
	ps, err := env.Runtime.PodSandboxStatus(ctx(t), podID, false)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Status.State != runtime.PodSandboxState_SANDBOX_READY || ps.Status.Labels["pod"] != "two" || ps.Status.Annotations["crimux.test/annotation"] != "yes" || ps.Status.RuntimeHandler == "" {
		t.Errorf("pod status: %+v", ps.Status)
	}
	stats, err := env.Runtime.ContainerStats(ctx(t), webID)
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	if stats.GetMemory().GetWorkingSetBytes().GetValue() == 0 || stats.GetCpu().GetUsageCoreNanoSeconds() == nil {
		t.Errorf("stats without usage: %+v", stats)
	}

	// Lists and filters.
	ctrs, err := env.Runtime.ListContainers(ctx(t), &runtime.ContainerFilter{PodSandboxId: podID, LabelSelector: map[string]string{"ctr": "web"}})
	if err != nil || len(ctrs) != 1 || ctrs[0].Id != webID {
		t.Errorf("ListContainers by pod and label: %v %v", ctrs, err)
	}
	pods, err := env.Runtime.ListPodSandbox(ctx(t), &runtime.PodSandboxFilter{State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}, LabelSelector: map[string]string{"pod": "two"}})
	if err != nil || len(pods) != 1 || pods[0].Id != podID {
		t.Errorf("ListPodSandbox by state and label: %v %v", pods, err)
	}

	// Stop and remove: nothing left.
	if err := env.Runtime.StopPodSandbox(ctx(t), podID); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if st := containerState(t, webID); st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("web after pod stop: %s", st.State)
	}
	ps, _ = env.Runtime.PodSandboxStatus(ctx(t), podID, false)
	if ps.Status.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after stop: %s", ps.Status.State)
	}
	if err := env.Runtime.StopPodSandbox(ctx(t), podID); err != nil {
		t.Errorf("second StopPodSandbox: %v", err)
	}
	if err := env.Runtime.RemovePodSandbox(ctx(t), podID); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if _, err := env.Runtime.PodSandboxStatus(ctx(t), podID, false); status.Code(err) != codes.NotFound {
		t.Errorf("status of removed pod: %v", err)
	}
	if _, err := env.Runtime.ContainerStatus(ctx(t), webID, false); status.Code(err) != codes.NotFound {
		t.Errorf("status of removed container: %v", err)
	}
	assertNoLeaks(t, []string{podID}, []string{webID, clientID})
	// Idempotent removal.
	if err := env.Runtime.RemovePodSandbox(ctx(t), podID); err != nil {
		t.Errorf("RemovePodSandbox of a removed pod: %v", err)
	}
	if err := env.Runtime.StopContainer(ctx(t), webID, 0); err != nil {
		t.Errorf("StopContainer of a removed container: %v", err)
	}
	if err := env.Runtime.RemoveContainer(ctx(t), webID); err != nil {
		t.Errorf("RemoveContainer of a removed container: %v", err)
	}
}

func rawExecSync(t *testing.T, id string, cmd []string, timeout int64) (*runtime.ExecSyncResponse, error) {
	conn := rawClient(t)
	return conn.ExecSync(ctx(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
}

// A container that exits on its own is EXITED with its code; one that ignores
// SIGTERM is killed after the stop timeout.
func TestContainerLifecycle(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "life")
	podID := runPod(t, pod)

	quick := startContainer(t, podID, pod, ctrConfig("quick", "sh", "-c", "echo bye; exit 3"))
	st := waitExited(t, quick)
	if st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt < st.StartedAt || st.FinishedAt == 0 {
		t.Errorf("quick exit status: %+v", st)
	}
	ok := startContainer(t, podID, pod, ctrConfig("ok", "true"))
	if st := waitExited(t, ok); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("ok exit status: %+v", st)
	}

	stubborn := startContainer(t, podID, pod, ctrConfig("stubborn", "sh", "-c", "trap '' TERM; echo trapped; while true; do sleep 0.1; done"))
	eventually(t, 20*time.Second, "trap installed", func() error {
		b, _ := os.ReadFile(filepath.Join(pod.LogDirectory, "stubborn.log"))
		if !strings.Contains(string(b), "trapped") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	start := time.Now()
	if err := env.Runtime.StopContainer(ctx(t), stubborn, 1); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	t.Logf("stop with 1s timeout took %s", time.Since(start))
	if st := containerState(t, stubborn); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("stubborn after stop: %+v", st)
	}

	// Start of an exited container is refused; remove works.
	if err := env.Runtime.StartContainer(ctx(t), quick); err == nil {
		t.Errorf("StartContainer of an exited container succeeded")
	}
	for _, id := range []string{quick, ok, stubborn} {
		if err := env.Runtime.RemoveContainer(ctx(t), id); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	}
	assertNoLeaks(t, nil, []string{quick, ok, stubborn})
}

// The image config's entrypoint, cmd, env and working dir apply, and the CRI
// config overrides them the CRI way.
func TestImageConfigAndOverrides(t *testing.T) {
	needEnv(t)
	if _, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: "crimux.test/echo-entrypoint:v1"}, nil, nil); err != nil {
		t.Fatalf("pull: %v", err)
	}
	pod := podConfig(t, "imgcfg")
	podID := runPod(t, pod)
	c := ctrConfig("plain")
	c.Image.Image = "crimux.test/echo-entrypoint:v1"
	c.Command = nil
	id := startContainer(t, podID, pod, c)
	waitExited(t, id)
	args := ctrConfig("args")
	args.Image.Image = "crimux.test/echo-entrypoint:v1"
	args.Command = nil
	args.Args = []string{"from-cri-args"}
	id2 := startContainer(t, podID, pod, args)
	waitExited(t, id2)
	cmd := ctrConfig("cmd", "sh", "-c", "echo $FROM_IMAGE $FROM_CRI $(pwd)")
	cmd.Image.Image = "crimux.test/echo-entrypoint:v1"
	cmd.Envs = []*runtime.KeyValue{{Key: "FROM_CRI", Value: []byte("cri")}}
	id3 := startContainer(t, podID, pod, cmd)
	waitExited(t, id3)
	for name, want := range map[string]string{"plain": "entry from-image-cmd", "args": "entry from-cri-args", "cmd": "yes cri /tmp"} {
		lines := logLines(t, filepath.Join(pod.LogDirectory, name+".log"))
		if len(lines) != 1 || lines[0][2] != want {
			t.Errorf("%s logged %v, want %q", name, lines, want)
		}
	}
}

// Security context: user, group, read-only rootfs, capabilities, no_new_privs.
func TestSecurityContext(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "sec")
	podID := runPod(t, pod)
	c := ctrConfig("sec", "sleep", "3600")
	c.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
		RunAsUser:          &runtime.Int64Value{Value: 33},
		RunAsGroup:         &runtime.Int64Value{Value: 100},
		SupplementalGroups: []int64{4242},
		ReadonlyRootfs:     true,
		NoNewPrivs:         true,
		Capabilities:       &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
	}
	c.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), Readonly: true}}
	id := startContainer(t, podID, pod, c)
	out, _, err := env.Runtime.ExecSync(ctx(t), id, []string{"id"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "uid=33(www-data) gid=100(users)") || !strings.Contains(got, "4242") {
		t.Errorf("id: %q", got)
	}
	if _, _, err := env.Runtime.ExecSync(ctx(t), id, []string{"touch", "/x"}, 10*time.Second); err == nil {
		resp, _ := rawExecSync(t, id, []string{"touch", "/x"}, 10)
		if resp.GetExitCode() == 0 {
			t.Errorf("read-only rootfs is writable")
		}
	}
	resp, _ := rawExecSync(t, id, []string{"touch", "/data/x"}, 10)
	if resp.GetExitCode() == 0 {
		t.Errorf("read-only mount is writable")
	}
	out, _, _ = env.Runtime.ExecSync(ctx(t), id, []string{"grep", "-E", "^(CapBnd|NoNewPrivs)", "/proc/self/status"}, 10*time.Second)
	if !strings.Contains(string(out), "CapBnd:\t0000000000000400") || !strings.Contains(string(out), "NoNewPrivs:\t1") {
		t.Errorf("caps/no_new_privs: %q", out)
	}
}

// crimux restarted with pods running lists them with the right state and IPs
// and can still stop and remove them.
func TestRestartWithPodsRunning(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "restart")
	podID := runPod(t, pod)
	ip := podIP(t, podID)
	long := startContainer(t, podID, pod, ctrConfig("long", "sh", "-c", "while true; do echo tick; sleep 0.5; done"))
	short := startContainer(t, podID, pod, ctrConfig("short", "sh", "-c", "sleep 2; exit 5"))

	env.StopCrimux()
	time.Sleep(3 * time.Second) // short exits while crimux is down
	if err := env.StartCrimux(); err != nil {
		t.Fatal(err)
	}
	if got := podIP(t, podID); got != ip {
		t.Errorf("IP after restart %s, want %s", got, ip)
	}
	ps, err := env.Runtime.PodSandboxStatus(ctx(t), podID, false)
	if err != nil || ps.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart: %v %v", ps, err)
	}
	if st := containerState(t, long); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("long after restart: %s", st.State)
	}
	if st := containerState(t, short); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 5 {
		t.Errorf("short after restart: %+v", st)
	}
	// Logs keep flowing after the restart, and exec works.
	logPath := filepath.Join(pod.LogDirectory, "long.log")
	before := len(logLines(t, logPath))
	eventually(t, 10*time.Second, "logs after restart", func() error {
		if n := len(logLines(t, logPath)); n <= before+1 {
			return fmt.Errorf("%d lines, had %d", n, before)
		}
		return nil
	})
	if out, _, err := env.Runtime.ExecSync(ctx(t), long, []string{"echo", "alive"}, 10*time.Second); err != nil || string(out) != "alive\n" {
		t.Errorf("exec after restart: %q %v", out, err)
	}
	if err := env.Runtime.StopPodSandbox(ctx(t), podID); err != nil {
		t.Fatalf("stop after restart: %v", err)
	}
	if err := env.Runtime.RemovePodSandbox(ctx(t), podID); err != nil {
		t.Fatalf("remove after restart: %v", err)
	}
	assertNoLeaks(t, []string{podID}, []string{long, short})
}

// ReopenContainerLog makes the container write to a new file after rotation.
func TestReopenContainerLog(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "reopen")
	podID := runPod(t, pod)
	id := startContainer(t, podID, pod, ctrConfig("ticker", "sh", "-c", "while true; do echo tick; sleep 0.2; done"))
	logPath := filepath.Join(pod.LogDirectory, "ticker.log")
	eventually(t, 10*time.Second, "first lines", func() error {
		if len(logLines(t, logPath)) == 0 {
			return fmt.Errorf("empty")
		}
		return nil
	})
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := env.Runtime.ReopenContainerLog(ctx(t), id); err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	eventually(t, 10*time.Second, "lines in the new file", func() error {
		if _, err := os.Stat(logPath); err != nil {
			return err
		}
		if len(logLines(t, logPath)) == 0 {
			return fmt.Errorf("empty")
		}
		return nil
	})
}

// Bad requests get clear errors with the right codes.
func TestBadRequests(t *testing.T) {
	needEnv(t)
	rc := rawClient(t)
	_, err := rc.RunPodSandbox(ctx(t), &runtime.RunPodSandboxRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("nil config: %v", err)
	}
	_, err = rc.RunPodSandbox(ctx(t), &runtime.RunPodSandboxRequest{Config: podConfig(t, "x"), RuntimeHandler: "no-such-handler"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no-such-handler") || !strings.Contains(err.Error(), "runc") {
		t.Errorf("unknown handler: %v", err)
	}
	_, err = rc.CreateContainer(ctx(t), &runtime.CreateContainerRequest{PodSandboxId: "nope", Config: ctrConfig("x", "true")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("container in missing pod: %v", err)
	}
	if _, err := rc.PodSandboxStatus(ctx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: "missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("status of missing pod: %v", err)
	}
	if _, err := rc.ContainerStatus(ctx(t), &runtime.ContainerStatusRequest{ContainerId: "missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("status of missing container: %v", err)
	}

	pullBusybox(t)
	pod := podConfig(t, "dup")
	podID := runPod(t, pod)
	_, err = rc.CreateContainer(ctx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("nil container config: %v", err)
	}
	missing := ctrConfig("missing-image", "true")
	missing.Image.Image = "docker.io/library/not-pulled:never"
	_, err = rc.CreateContainer(ctx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: missing, SandboxConfig: pod})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "not-pulled") {
		t.Errorf("missing image: %v", err)
	}
	// Duplicate names: a container name in the pod, and a pod name with another config.
	first, err := env.Runtime.CreateContainer(ctx(t), podID, ctrConfig("same", "true"), pod)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Runtime.CreateContainer(ctx(t), podID, ctrConfig("same", "true"), pod)
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), first) {
		t.Errorf("duplicate container name: %v", err)
	}
	again, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
	if err != nil || again != podID {
		t.Errorf("retried RunPodSandbox with the same config: %s %v (want %s)", again, err, podID)
	}
	other := podConfig(t, "dup")
	other.Metadata.Uid = pod.Metadata.Uid
	other.Labels["different"] = "yes"
	_, err = env.Runtime.RunPodSandbox(ctx(t), other, env.Handler)
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), podID) {
		t.Errorf("duplicate pod name: %v", err)
	}
	// A failed RunPodSandbox leaves nothing: an invalid port mapping.
	bad := podConfig(t, "badport")
	bad.PortMappings = []*runtime.PortMapping{{ContainerPort: 70000}}
	if _, err := rc.RunPodSandbox(ctx(t), &runtime.RunPodSandboxRequest{Config: bad}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad port mapping: %v", err)
	}
}

// Status reports ready conditions and the configured handlers.
func TestRuntimeStatus(t *testing.T) {
	needEnv(t)
	st, err := env.Runtime.Status(ctx(t), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if !c.Status {
			t.Errorf("condition %s not ready: %s %s", c.Type, c.Reason, c.Message)
		}
	}
	names := map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		names[h.Name] = true
		// Features are claimed where they work; that they do is the business
		// of TestRecursiveReadOnlyMount and TestPodUserNamespace. A gVisor
		// sandbox can't have a user namespace of the pod's.
		if h.Features == nil || strings.HasPrefix(h.Name, "gvisor") && h.Features.UserNamespaces {
			t.Errorf("handler %q claims features it lacks: %+v", h.Name, h.Features)
		}
	}
	if !names["runc"] || !names["gvisor"] || !names[""] {
		t.Errorf("runtime handlers: %v", st.RuntimeHandlers)
	}
	v, err := env.Runtime.Version(ctx(t), "v1")
	if err != nil || v.RuntimeName != "crimux" || v.RuntimeApiVersion != "v1" {
		t.Errorf("version: %v %v", v, err)
	}
	rc, err := env.Runtime.RuntimeConfig(ctx(t))
	if err != nil || rc.Linux.CgroupDriver != runtime.CgroupDriver_CGROUPFS {
		t.Errorf("runtime config: %v %v", rc, err)
	}
}

// Port forwarding reaches a server on the pod's localhost.
func TestPortForwardURL(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "pf")
	podID := runPod(t, pod)
	startContainer(t, podID, pod, ctrConfig("srv", "sh", "-c", "mkdir -p /w && echo pf-ok > /w/index.html && exec httpd -f -p 127.0.0.1:8080 -h /w"))
	resp, err := env.Runtime.PortForward(ctx(t), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	if !strings.HasPrefix(resp.Url, "http://127.0.0.1:") {
		t.Errorf("url %q", resp.Url)
	}
	// The stream itself is exercised through crictl port-forward in TestCrictl.
}

// What a crash between creating a pod and saving its record leaves (here:
// the records removed while crimux is down) is swept when crimux starts:
// containers, netns, IP allocation, pod dir and mounts.
func TestRestartSweepsOrphans(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "orphan")
	podID := runPod(t, pod)
	ip := podIP(t, podID)
	ctr := startContainer(t, podID, pod, ctrConfig("c", "sleep", "3600"))
	ipamFile := ""
	_ = filepath.WalkDir(filepath.Join(env.Dir, "ipam"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == ip {
			ipamFile = p
		}
		return nil
	})
	if ipamFile == "" {
		t.Fatalf("no host-local allocation for %s", ip)
	}
	env.StopCrimux()
	for _, rec := range []string{filepath.Join("sandboxes", podID+".json"), filepath.Join("containers", ctr+".json")} {
		if err := os.Remove(filepath.Join(env.Dir, "root", rec)); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.StartCrimux(); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Runtime.PodSandboxStatus(ctx(t), podID, false); err == nil {
		t.Errorf("the pod without a record is still known")
	}
	assertNoLeaks(t, []string{podID}, []string{ctr})
	if _, err := os.Stat(ipamFile); err == nil {
		t.Errorf("the pod's IP %s is still allocated (%s)", ip, ipamFile)
	}
}
