package test

import (
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"os/exec"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DNS config becomes the pod's resolv.conf; sysctls apply in the pod (runc)
// or are refused with the reason (gVisor applies almost none).
func TestPodDNSAndSysctls(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "dns")
	pod.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}
	pod.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}
	files := []string{"cat", "/etc/resolv.conf", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/etc/hosts"}
	wants := []string{"\n80\n"}
	if isGvisor() {
		_, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "net.ipv4.ip_unprivileged_port_start") {
			t.Fatalf("gVisor pod with an unsupported sysctl: %v", err)
		}
		pod = podConfig(t, "dns")
		pod.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}
		files = []string{"cat", "/etc/resolv.conf", "/etc/hosts"}
		wants = nil
	}
	podID := runPod(t, pod)
	id := startContainer(t, podID, pod, ctrConfig("c", "sleep", "3600"))
	out, _, err := env.Runtime.ExecSync(ctx(t), id, files, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range append(wants, "search svc.cluster.local", "nameserver 10.96.0.10", "options ndots:5", podIP(t, podID)+"\tdns") {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// A host-network pod shares the node's network namespace and has no netns of its own.
func TestHostNetworkPod(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	pod := podConfig(t, "hostnet")
	pod.Hostname = ""
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}
	if isGvisor() {
		_, err := env.Runtime.RunPodSandbox(ctx(t), pod, env.Handler)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hostNetwork") {
			t.Fatalf("gVisor host-network pod: %v", err)
		}
		return
	}
	podID := runPod(t, pod)
	id := startContainer(t, podID, pod, ctrConfig("c", "sleep", "3600"))
	out, _, err := env.Runtime.ExecSync(ctx(t), id, []string{"sh", "-c", "readlink /proc/self/ns/net; hostname"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// This thread's: the main thread's may sit in a pod netns, where a
	// goroutine that entered one (sandbox.NewNetNS) left it wedged.
	host, _ := os.Readlink("/proc/thread-self/ns/net")
	hn, _ := os.Hostname()
	if string(out) != host+"\n"+hn+"\n" {
		t.Errorf("host network pod sees %q, host has %q %q", out, host, hn)
	}
	if _, err := os.Stat(env.Dir + "/state/netns/" + podID); err == nil {
		t.Errorf("host network pod got a netns")
	}
}

// crictl exec -it and attach -it work through a terminal.
func TestCrictlInteractive(t *testing.T) {
	needEnv(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (util-linux) is needed to give crictl a terminal: %v", err)
	}
	pullBusybox(t)
	pod := podConfig(t, "tty")
	podID := runPod(t, pod)
	c := ctrConfig("shell", "sh")
	c.Stdin, c.Tty = true, true
	id := startContainer(t, podID, pod, c)
	base := crictlBin(t) + " " + strings.Join(crictlFlags(), " ")
	run := func(args, input string) string {
		cmd := exec.Command("script", "-qec", base+" "+args, "/dev/null")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("script %s: %v", args, err)
		}
		return string(out)
	}
	if out := run("exec -it "+id+" sh -c '[ -t 0 ] && echo is-a-terminal; echo exec-$((6*7))'", ""); !strings.Contains(out, "is-a-terminal") || !strings.Contains(out, "exec-42") {
		t.Errorf("exec -it output: %q", out)
	}
	// attach: what is typed reaches the container's shell, whose output comes back.
	cmd := exec.Command("script", "-qec", base+" attach -it "+id, "/dev/null")
	stdin, _ := cmd.StdinPipe()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	_, _ = stdin.Write([]byte("echo attached-$((6*7))\r"))
	eventually(t, 20*time.Second, "attach output", func() error {
		if !strings.Contains(out.String(), "attached-42") {
			return os.ErrNotExist
		}
		return nil
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}
