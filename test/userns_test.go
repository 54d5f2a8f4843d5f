package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// handlerFeatures is what Status reports for the suite's handler.
func handlerFeatures(t *testing.T) *runtime.RuntimeHandlerFeatures {
	t.Helper()
	st, err := env.Runtime.Status(ctx(t), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if h.GetName() == env.Handler {
			return h.GetFeatures()
		}
	}
	t.Fatalf("handler %q not in Status", env.Handler)
	return nil
}

func usernsPod(t *testing.T, name string, hostID uint32, hostNet bool) *runtime.PodSandboxConfig {
	pod := podConfig(t, name)
	m := []*runtime.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	ns := &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m}}
	if hostNet {
		ns.Network = runtime.NamespaceMode_NODE
	}
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	return pod
}

// A pod with a user namespace of its own: its root is an unprivileged host
// uid, the image's files still belong to its root (an idmapped rootfs), its
// network is its own (sysfs included), and nothing is left once it's removed.
// A handler that can't do it refuses, rather than run the pod in the node's.
func TestPodUserNamespace(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	const hostID = 231072
	if !handlerFeatures(t).GetUserNamespaces() {
		_, err := env.Runtime.RunPodSandbox(ctx(t), usernsPod(t, "userns-refused", hostID, false), env.Handler)
		if err == nil || !strings.Contains(err.Error(), "user namespace") {
			t.Fatalf("handler %s without the user_namespaces feature: RunPodSandbox err = %v", env.Handler, err)
		}
		t.Skipf("handler %s reports no user namespaces; the request was refused: %v", env.Handler, err)
	}
	for _, hostNet := range []bool{false, true} {
		t.Run(fmt.Sprintf("hostNetwork=%v", hostNet), func(t *testing.T) {
			pod := usernsPod(t, "userns", hostID, hostNet)
			podID := runPod(t, pod)
			c := ctrConfig("c", "sleep", "3600")
			c.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{NamespaceOptions: pod.Linux.SecurityContext.NamespaceOptions}
			// An idmapped volume, as the kubelet asks for one: the node's
			// root-owned files are the pod's root's.
			vol := t.TempDir()
			if err := os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			m := pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Uids
			c.Mounts = []*runtime.Mount{{HostPath: vol, ContainerPath: "/vol", UidMappings: m, GidMappings: m}}
			id := startContainer(t, podID, pod, c)
			if out, stderr, err := env.Runtime.ExecSync(ctx(t), id, []string{"sh", "-c", "stat -c %u:%g /vol/f; touch /vol/g"}, 30*time.Second); err != nil || string(out) != "0:0\n" {
				t.Errorf("idmapped volume: %q %q %v", out, stderr, err)
			}
			if st, err := os.Stat(filepath.Join(vol, "g")); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("a file the pod's root made on the idmapped volume: %v %v", st, err)
			}
			out, stderr, err := env.Runtime.ExecSync(ctx(t), id, []string{"sh", "-c", "cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /written && echo wrote; ls /sys/class/net | tr '\\n' ' '"}, 30*time.Second)
			if err != nil {
				t.Fatalf("exec: %v %s", err, stderr)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != fmt.Sprintf("0 %d 65536", hostID) || lines[1] != "0" || lines[2] != "wrote" {
				t.Fatalf("inside the pod: %q", out)
			}
			if !hostNet && !strings.Contains(lines[3], "eth0") {
				t.Errorf("the pod's sysfs shows %q, not its own eth0", lines[3])
			}
			st, err := env.Runtime.ContainerStatus(ctx(t), id, true)
			if err != nil {
				t.Fatal(err)
			}
			var info struct{ Pid int }
			if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
				t.Fatalf("no pid in verbose status: %v %s", err, st.GetInfo()["info"])
			}
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.Pid))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(l, "Uid:") && strings.Fields(l)[1] != fmt.Sprint(hostID) {
					t.Errorf("the container's root is host %s, want uid %d", l, hostID)
				}
			}
			c2, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := env.Runtime.StopPodSandbox(c2, podID); err != nil {
				t.Fatal(err)
			}
			if err := env.Runtime.RemovePodSandbox(c2, podID); err != nil {
				t.Fatal(err)
			}
			assertNoLeaks(t, []string{podID}, []string{id})
		})
	}
}
