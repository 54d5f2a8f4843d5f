package test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends/backendtest"
	"github.com/crimux/crimux/backends/cri"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/router"
	"github.com/crimux/crimux/test/harness"
	"github.com/crimux/crimux/test/images"
)

const fwd = harness.FwdHandler

// remoteHandler is the remote's handler the fwd handler asks for.
func remoteHandler() string {
	if env.Handler == "" {
		return "runc"
	}
	return env.Handler
}

// The forwarding driver passes the backend suite, driven directly against
// containerd's own CRI.
func TestForwardBackendSuite(t *testing.T) {
	needEnv(t)
	rec := &backendtest.Recorder{}
	d, err := cri.New(cri.Options{
		Handlers: map[string]conf.Handler{fwd: {Driver: cri.DriverName, Options: map[string]any{
			"endpoint": "unix://" + env.Remote.Socket, "remote_handler": remoteHandler(), "timeout": "2m"}}},
		Instance: "backendtest",
		Log:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Start(rec)
	if err := d.HandlerReady(ctx(t), fwd); err != nil {
		t.Fatal(err)
	}
	img, err := d.Images(fwd).Pull(ctx(t), harness.Busybox, nil, "")
	if err != nil {
		t.Fatalf("pull %s on the remote: %v", harness.Busybox, err)
	}
	backendtest.Run(t, backendtest.Config{Driver: d, Handler: fwd, Recorder: rec, Image: img.ID, Dir: filepath.Join(env.Dir, "backendtest-fwd")})
}

// remotePods are the remote's pods labelled with crimux's ID id.
func remotePods(t *testing.T, id string) []*runtime.PodSandbox {
	t.Helper()
	pods, err := env.Remote.Runtime.ListPodSandbox(ctx(t), &runtime.PodSandboxFilter{LabelSelector: map[string]string{"io.crimux.id": id}})
	if err != nil {
		t.Fatalf("list the remote's pods: %v", err)
	}
	return pods
}

// handlerCondition is Status's condition for a handler's readiness.
func handlerCondition(t *testing.T, handler string) *runtime.RuntimeCondition {
	t.Helper()
	st, err := env.Runtime.Status(ctx(t), false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var out *runtime.RuntimeCondition
	for _, c := range st.Status.Conditions {
		if c.Type == runtime.RuntimeReady && !c.Status {
			t.Errorf("RuntimeReady is false: %s %s", c.Reason, c.Message)
		}
		if c.Type == router.HandlerReadyCondition(handler) {
			out = c
		}
	}
	if out == nil {
		t.Fatalf("Status has no condition %s: %v", router.HandlerReadyCondition(handler), st.Status.Conditions)
	}
	return out
}

// A pod of the forwarded handler runs on the remote with the remote's
// network, and everything a client does with it goes there: containers,
// logs, exec (ExecSync and the remote's streaming server through crictl),
// port-forward, exits. It lives through a restart of crimux and one of the
// remote; while the remote is down only its handler is not ready.
func TestForwardPod(t *testing.T) {
	needEnv(t)
	pullBusybox(t) // without a handler: the remote gets it when a container needs it
	pod := podConfig(t, "fwd")
	id, err := env.Runtime.RunPodSandbox(ctx(t), pod, fwd)
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", fwd, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = env.Runtime.StopPodSandbox(c, id)
		_ = env.Runtime.RemovePodSandbox(c, id)
	})
	st, err := env.Runtime.PodSandboxStatus(ctx(t), id, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.RuntimeHandler != fwd || st.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod status: handler %q state %v", st.Status.RuntimeHandler, st.Status.State)
	}
	ip, err := netip.ParseAddr(st.Status.GetNetwork().GetIp())
	if err != nil || !netip.MustParsePrefix(env.Remote.Subnet).Contains(ip) {
		t.Errorf("pod IP %q is not in the remote's subnet %s", st.Status.GetNetwork().GetIp(), env.Remote.Subnet)
	}
	if rp := remotePods(t, id); len(rp) != 1 || rp[0].RuntimeHandler != remoteHandler() {
		t.Fatalf("the remote has %d pods for %s (want 1 with handler %s): %v", len(rp), id, remoteHandler(), rp)
	}
	if c := handlerCondition(t, fwd); !c.Status {
		t.Errorf("handler %s not ready: %s %s", fwd, c.Reason, c.Message)
	}

	web := startContainer(t, id, pod, ctrConfig("web", "sh", "-c", "mkdir -p /w && echo fwd-ok > /w/index.html && echo started && exec httpd -f -p 8080 -h /w"))
	if out, _, err := env.Runtime.ExecSync(ctx(t), web, []string{"cat", "/w/index.html"}, 30*time.Second); err != nil || strings.TrimSpace(string(out)) != "fwd-ok" {
		t.Errorf("ExecSync: %q %v", out, err)
	}
	resp, err := env.Runtime.Exec(ctx(t), &runtime.ExecRequest{ContainerId: web, Cmd: []string{"true"}, Stdout: true})
	if err != nil || !strings.Contains(resp.GetUrl(), "127.0.0.1") {
		t.Errorf("Exec URL: %v %v", resp, err)
	}
	if out := crictl(t, "exec", web, "cat", "/w/index.html"); out != "fwd-ok" {
		t.Errorf("crictl exec through the remote's streaming server: %q", out)
	}
	eventually(t, 20*time.Second, "crictl logs (written by the remote)", func() error {
		out, _ := crictlCmd(t, "logs", web).CombinedOutput()
		if !strings.Contains(string(out), "started") {
			return fmt.Errorf("logs %q", out)
		}
		return nil
	})
	if isGvisor() {
		// containerd's CRI dials the port in the pod's netns, where gVisor's
		// netstack listens on nothing: a limit of the remote, passed through.
		t.Log("port-forward not checked: containerd's CRI can't forward into its gVisor pods")
	} else {
		forwardPort(t, id)
	}
	quit := startContainer(t, id, pod, ctrConfig("quit", "sh", "-c", "exit 3"))
	if st := waitExited(t, quit); st.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", st.ExitCode)
	}
	if _, err := env.Runtime.ContainerStats(ctx(t), web); err != nil {
		t.Errorf("ContainerStats: %v", err)
	}
	if ps, err := env.Runtime.PodSandboxStats(ctx(t), id); err != nil || ps.GetAttributes().GetId() != id || len(ps.GetLinux().GetNetwork().GetInterfaces()) == 0 {
		t.Errorf("PodSandboxStats (the remote's, with its network): %v %v", ps, err)
	} else if cs := ps.GetLinux().GetContainers(); len(cs) == 0 || cs[0].GetAttributes().GetId() != web {
		t.Errorf("PodSandboxStats' containers: %v, want %s under crimux's ID", cs, web)
	}
	pms, err := env.Runtime.ListPodSandboxMetrics(ctx(t))
	found := false
	for _, pm := range pms {
		found = found || pm.PodSandboxId == id && len(pm.ContainerMetrics) > 0
	}
	if err != nil || !found {
		t.Errorf("ListPodSandboxMetrics has no metrics for the pod: %v", err)
	}

	// crimux restarts: the pod and its containers are found again on the
	// remote, and an exit during or after the restart is heard.
	late := startContainer(t, id, pod, ctrConfig("late", "sh", "-c", "sleep 4; exit 5"))
	env.StopCrimux()
	if err := env.StartCrimux(); err != nil {
		t.Fatal(err)
	}
	if out, _, err := env.Runtime.ExecSync(ctx(t), web, []string{"echo", "after-restart"}, 30*time.Second); err != nil || strings.TrimSpace(string(out)) != "after-restart" {
		t.Errorf("ExecSync after a crimux restart: %q %v", out, err)
	}
	if st := waitExited(t, late); st.ExitCode != 5 {
		t.Errorf("exit across a crimux restart: code %d, want 5", st.ExitCode)
	}

	// The remote goes away: only its handler is not ready, with the reason,
	// and local handlers keep serving; calls for its pods fail with the
	// remote's code.
	env.Remote.Stop()
	if c := handlerCondition(t, fwd); c.Status || c.Message == "" {
		t.Errorf("handler %s with its remote down: %+v, want not ready with a reason", fwd, c)
	}
	local := runPod(t, podConfig(t, "while-remote-down"))
	if err := env.Runtime.StopPodSandbox(ctx(t), local); err != nil {
		t.Errorf("a local pod while the remote is down: %v", err)
	}
	if _, err := env.Runtime.RunPodSandbox(ctx(t), podConfig(t, "fwd-down"), fwd); status.Code(err) != codes.Unavailable {
		t.Errorf("RunPodSandbox with the remote down: %v, want Unavailable", err)
	}
	if err := env.RestartRemote(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "handler ready again", func() error {
		if c := handlerCondition(t, fwd); !c.Status {
			return fmt.Errorf("%s %s", c.Reason, c.Message)
		}
		return nil
	})
	if out, _, err := env.Runtime.ExecSync(ctx(t), web, []string{"echo", "remote-back"}, 30*time.Second); err != nil || strings.TrimSpace(string(out)) != "remote-back" {
		t.Errorf("ExecSync after the remote restarted: %q %v", out, err)
	}
	again := startContainer(t, id, pod, ctrConfig("again", "sh", "-c", "exit 6"))
	if st := waitExited(t, again); st.ExitCode != 6 {
		t.Errorf("exit after the remote restarted: code %d, want 6", st.ExitCode)
	}

	if err := env.Runtime.StopPodSandbox(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if err := env.Runtime.RemovePodSandbox(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if rp := remotePods(t, id); len(rp) != 0 {
		t.Errorf("the remote still has the pod: %v", rp)
	}
	if cs, err := env.Remote.Runtime.ListContainers(ctx(t), &runtime.ContainerFilter{LabelSelector: map[string]string{"io.crimux.id": web}}); err != nil || len(cs) != 0 {
		t.Errorf("the remote still has containers: %v %v", cs, err)
	}
}

// Images with the forwarded handler's runtime_handler live in the remote's
// store only (KEP-4216); requests without a handler keep to crimux's own.
func TestForwardImages(t *testing.T) {
	needEnv(t)
	l := images.NewLayer()
	l.File("/only-remote", 0o644, []byte(t.Name()))
	img, err := images.WithLayer(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	repo := fmt.Sprintf("fwd-only-%s:1", env.RunID)
	if _, err := env.Registry.Push(repo, img); err != nil {
		t.Fatal(err)
	}
	ref := "crimux.test/" + repo
	remoteSpec := &runtime.ImageSpec{Image: ref, RuntimeHandler: fwd}
	id, err := env.Image.PullImage(ctx(t), remoteSpec, nil, nil)
	if err != nil {
		t.Fatalf("PullImage for %s: %v", fwd, err)
	}
	if st, err := env.Image.ImageStatus(ctx(t), remoteSpec, false); err != nil || st.GetImage().GetId() != id {
		t.Errorf("ImageStatus for %s: %v %v, want %s", fwd, st.GetImage(), err, id)
	}
	if st, err := env.Image.ImageStatus(ctx(t), &runtime.ImageSpec{Image: ref}, false); err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus without a handler: %v %v, want absent (pulled for %s only)", st.GetImage(), err, fwd)
	}
	if st, err := env.Image.ImageStatus(ctx(t), &runtime.ImageSpec{Image: ref, RuntimeHandler: remoteHandler()}, false); err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus for local handler %s: %v %v, want absent", remoteHandler(), st.GetImage(), err)
	}
	list, err := env.Image.ListImages(ctx(t), &runtime.ImageFilter{Image: &runtime.ImageSpec{RuntimeHandler: fwd}})
	found := false
	for _, i := range list {
		found = found || i.Id == id
	}
	if err != nil || !found {
		t.Errorf("ListImages for %s lacks %s: %v", fwd, id, err)
	}
	fs, err := env.Image.ImageFsInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	remoteFs := false
	for _, f := range fs.GetImageFilesystems() {
		mounts = append(mounts, f.GetFsId().GetMountpoint())
		remoteFs = remoteFs || strings.HasPrefix(f.GetFsId().GetMountpoint(), env.Remote.Dir)
	}
	if !remoteFs || len(mounts) < 2 {
		t.Errorf("ImageFsInfo %v: want crimux's filesystem and the remote's (under %s)", mounts, env.Remote.Dir)
	}
	if err := env.Image.RemoveImage(ctx(t), remoteSpec); err != nil {
		t.Fatal(err)
	}
	if st, err := env.Image.ImageStatus(ctx(t), remoteSpec, false); err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus for %s after RemoveImage: %v %v", fwd, st.GetImage(), err)
	}
}

// forwardPort fetches the pod's page on port 8080 through crictl port-forward.
func forwardPort(t *testing.T, podID string) {
	t.Helper()
	port := 30000 + time.Now().Nanosecond()%20000
	pf := crictlCmd(t, "port-forward", podID, fmt.Sprintf("%d:8080", port))
	var pfOut strings.Builder
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "port-forward through the remote", func() error {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil && strings.TrimSpace(body) != "fwd-ok" {
			err = fmt.Errorf("body %q", body)
		}
		if err != nil {
			err = fmt.Errorf("%w (crictl: %s)", err, pfOut.String())
		}
		return err
	})
	_ = pf.Process.Kill()
	_ = pf.Wait()
}

// A remote that hangs costs each call at most its handler's timeout, makes
// only its handlers not ready, and what a timed-out RunPodSandbox may have
// made there once it answers again is removed.
func TestForwardRemoteHangs(t *testing.T) {
	needEnv(t)
	short := harness.FwdShortHandler
	if err := env.Remote.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = env.Remote.Signal(syscall.SIGCONT)
		}
	}()
	if c := handlerCondition(t, short); c.Status || !strings.Contains(c.Message, "DeadlineExceeded") {
		t.Errorf("handler %s with its remote hung: %+v, want not ready, deadline exceeded", short, c)
	}
	local := runPod(t, podConfig(t, "while-remote-hangs"))
	if err := env.Runtime.StopPodSandbox(ctx(t), local); err != nil {
		t.Errorf("a local pod while the remote hangs: %v", err)
	}
	pod := podConfig(t, "fwd-hung")
	start := time.Now()
	_, err := env.Runtime.RunPodSandbox(ctx(t), pod, short)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("RunPodSandbox on a hung remote: %v, want DeadlineExceeded", err)
	}
	t.Logf("RunPodSandbox on a hung remote returned after %s (timeout 3s)", time.Since(start).Round(time.Millisecond))
	if pods, err := env.Runtime.ListPodSandbox(ctx(t), &runtime.PodSandboxFilter{LabelSelector: map[string]string{"pod": "fwd-hung"}}); err != nil || len(pods) != 0 {
		t.Errorf("crimux lists the pod that timed out: %v %v", pods, err)
	}
	if err := env.Remote.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	eventually(t, 2*time.Minute, "nothing of the timed-out pod left on the remote", func() error {
		all, err := env.Remote.Runtime.ListPodSandbox(ctx(t), nil)
		if err != nil {
			return err
		}
		for _, p := range all {
			if p.Metadata.Uid == pod.Metadata.Uid {
				return fmt.Errorf("remote pod %s (%s) is left", p.Id, p.State)
			}
		}
		return nil
	})
	eventually(t, time.Minute, "handler ready again", func() error {
		if c := handlerCondition(t, short); !c.Status {
			return fmt.Errorf("%s %s", c.Reason, c.Message)
		}
		return nil
	})
}

// A crash of crimux between the remote making a pod or container and
// crimux recording it: the next crimux removes it from the remote.
func TestForwardCrash(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	remoteHas := func(uid, ctrName string) error {
		pods, err := env.Remote.Runtime.ListPodSandbox(ctx(t), nil)
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.Metadata.Uid != uid {
				continue
			}
			if ctrName == "" {
				return fmt.Errorf("remote pod %s is left", p.Id)
			}
			cs, err := env.Remote.Runtime.ListContainers(ctx(t), &runtime.ContainerFilter{PodSandboxId: p.Id})
			if err != nil {
				return err
			}
			for _, c := range cs {
				if c.Metadata.Name == ctrName {
					return fmt.Errorf("remote container %s is left", c.Id)
				}
			}
		}
		return nil
	}
	t.Run("run-sandbox/after-remote", func(t *testing.T) {
		pod := podConfig(t, "fwd-crash")
		crashAt(t, "run-sandbox/after-remote", func() error { _, err := env.Runtime.RunPodSandbox(ctx(t), pod, fwd); return err })
		if err := remoteHas(pod.Metadata.Uid, ""); err != nil {
			t.Error(err)
		}
		id, err := env.Runtime.RunPodSandbox(ctx(t), pod, fwd)
		if err != nil {
			t.Fatalf("the kubelet's retry: %v", err)
		}
		_ = env.Runtime.StopPodSandbox(ctx(t), id)
		_ = env.Runtime.RemovePodSandbox(ctx(t), id)
	})
	t.Run("create-container/after-create", func(t *testing.T) {
		pod := podConfig(t, "fwd-crash")
		id, err := env.Runtime.RunPodSandbox(ctx(t), pod, fwd)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = env.Runtime.StopPodSandbox(ctx(t), id); _ = env.Runtime.RemovePodSandbox(ctx(t), id) }()
		crashAt(t, "create-container/after-create", func() error {
			_, err := env.Runtime.CreateContainer(ctx(t), id, ctrConfig("lost", "sleep", "3600"), pod)
			return err
		})
		if err := remoteHas(pod.Metadata.Uid, "lost"); err != nil {
			t.Error(err)
		}
		startContainer(t, id, pod, ctrConfig("lost", "sleep", "3600")) // the retry, same name
	})
}
