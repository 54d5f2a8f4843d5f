package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// scenario is one thing checked through the kubelet; its pods are created
// up front with every other scenario's, then check runs.
type scenario struct {
	name  string
	objs  []obj
	check func(ctx context.Context) error
}

// handlerScenarios are the scenarios run once per RuntimeClass handler
// (handler "" is a pod without a RuntimeClass: crimux's default handler).
func (e *e2e) handlerScenarios(handler string) []scenario {
	s := handler
	if s == "" {
		s = "default"
	}
	c := e.c
	gvisor := strings.HasPrefix(handler, "gvisor")
	n := func(base string) string { return base + "-" + s }
	memLimit := func(pod, container string, want int64) error {
		// cgroup v1 here; v2 names the file memory.max.
		out, err := c.exec(context.Background(), pod, container, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(out); got != strconv.FormatInt(want, 10) {
			return fmt.Errorf("memory limit seen in the container %q, want %d", got, want)
		}
		return nil
	}
	hostDir := filepath.Join(e.env.Dir, "k8s", "host-"+s)
	_ = os.MkdirAll(hostDir, 0o777)

	list := []scenario{
		{
			name: "two containers talk over localhost",
			objs: []obj{podObj(n("sidecar"), handler, obj{"containers": []obj{
				ctr("web", "mkdir -p /www && echo hello-from-"+s+" > /www/index.html && exec httpd -f -p 8080 -h /www", nil),
				ctr("side", "while true; do wget -qO- http://127.0.0.1:8080/ && echo SIDE-OK; sleep 1; done", nil),
			}})},
			check: func(ctx context.Context) error {
				if _, err := c.waitReady(ctx, n("sidecar")); err != nil {
					return err
				}
				return waitFor(60*time.Second, "sidecar reaches web", func() error {
					out, err := c.kubectl(ctx, "logs", n("sidecar"), "-c", "side")
					if err != nil || !strings.Contains(out, "hello-from-"+s) || !strings.Contains(out, "SIDE-OK") {
						return fmt.Errorf("side log %q: %v", out, err)
					}
					return nil
				})
			},
		},
		{
			name: "init container, then an emptyDir it filled",
			objs: []obj{podObj(n("init"), handler, obj{
				"volumes":        []obj{{"name": "data", "emptyDir": obj{}}},
				"initContainers": []obj{ctr("init", "echo from-init > /data/x", obj{"volumeMounts": []obj{{"name": "data", "mountPath": "/data"}}})},
				"containers":     []obj{ctr("main", "cat /data/x; exec sleep 3600", obj{"volumeMounts": []obj{{"name": "data", "mountPath": "/data"}}})},
			})},
			check: func(ctx context.Context) error {
				p, err := c.waitReady(ctx, n("init"))
				if err != nil {
					return err
				}
				if st := p.container("init"); st == nil || st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
					return fmt.Errorf("init container status %+v", st)
				}
				return waitFor(30*time.Second, "main's log", func() error {
					out, err := c.kubectl(ctx, "logs", n("init"), "-c", "main")
					if err != nil || strings.TrimSpace(out) != "from-init" {
						return fmt.Errorf("main log %q: %v", out, err)
					}
					return nil
				})
			},
		},
		{
			name: "an emptyDir shared by two containers",
			objs: []obj{podObj(n("shared"), handler, obj{
				"volumes": []obj{{"name": "shared", "emptyDir": obj{}}},
				"containers": []obj{
					ctr("writer", "echo written-"+s+" > /shared/w; exec sleep 3600", obj{"volumeMounts": []obj{{"name": "shared", "mountPath": "/shared"}}}),
					ctr("reader", "exec sleep 3600", obj{"volumeMounts": []obj{{"name": "shared", "mountPath": "/shared"}}}),
				},
			})},
			check: func(ctx context.Context) error {
				if _, err := c.waitReady(ctx, n("shared")); err != nil {
					return err
				}
				return waitFor(30*time.Second, "reader sees the writer's file", func() error {
					out, err := c.exec(ctx, n("shared"), "reader", "cat", "/shared/w")
					if err != nil || strings.TrimSpace(out) != "written-"+s {
						return fmt.Errorf("%q: %v", out, err)
					}
					return nil
				})
			},
		},
		{
			name: "configMap and secret volumes",
			objs: []obj{
				{"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj{"name": n("cm")}, "data": obj{"greeting": "hello-cm-" + s}},
				{"apiVersion": "v1", "kind": "Secret", "metadata": obj{"name": n("sec")}, "stringData": obj{"password": "s3cret-" + s}},
				podObj(n("volumes"), handler, obj{
					"volumes": []obj{{"name": "cm", "configMap": obj{"name": n("cm")}}, {"name": "sec", "secret": obj{"secretName": n("sec")}}},
					"containers": []obj{ctr("c", "exec sleep 3600", obj{"volumeMounts": []obj{
						{"name": "cm", "mountPath": "/etc/cm"}, {"name": "sec", "mountPath": "/etc/sec", "readOnly": true}}})},
				}),
			},
			check: func(ctx context.Context) error {
				if _, err := c.waitReady(ctx, n("volumes")); err != nil {
					return err
				}
				out, err := c.exec(ctx, n("volumes"), "c", "sh", "-c", "cat /etc/cm/greeting; echo; cat /etc/sec/password")
				if err != nil || out != "hello-cm-"+s+"\ns3cret-"+s {
					return fmt.Errorf("volume contents %q: %v", out, err)
				}
				return nil
			},
		},
		{
			name: "exec readiness and liveness probes",
			objs: []obj{podObj(n("probes"), handler, obj{"containers": []obj{
				// Liveness holds until the check creates /tmp/dead, so it
				// cannot fail before the shell has run its first command (a
				// gVisor container on a node busy starting every scenario's
				// pods may take longer than initialDelaySeconds to get there).
				// A probe's exec gets 5 s (the default is 1 s) and liveness
				// three tries, so one slow exec does not restart it either.
				ctr("c", "sleep 2; touch /tmp/ready; exec sleep 3600", obj{
					"readinessProbe": obj{"exec": obj{"command": []string{"cat", "/tmp/ready"}}, "periodSeconds": 1, "timeoutSeconds": 5},
					"livenessProbe": obj{"exec": obj{"command": []string{"sh", "-c", "! test -e /tmp/dead"}},
						"periodSeconds": 1, "failureThreshold": 3, "initialDelaySeconds": 1, "timeoutSeconds": 5},
				}),
			}})},
			check: func(ctx context.Context) error {
				// The restart counted is the one after /tmp/dead is made,
				// whatever restarts came before it. A restart between the
				// pod's Ready and the exec fails the exec; the API server may
				// still show the pod Ready for a moment after, so retry
				// until the exec reaches a running container.
				var restarts int
				err := waitFor(2*time.Minute, "kubectl exec touch /tmp/dead", func() error {
					p, err := c.waitReady(ctx, n("probes"))
					if err != nil {
						return err
					}
					if st := p.container("c"); st != nil {
						restarts = st.RestartCount
					}
					if _, err = c.exec(ctx, n("probes"), "c", "touch", "/tmp/dead"); err != nil {
						return err
					}
					// A restart around the exec leaves it unknown which
					// container has /tmp/dead: make it again.
					if p, err = c.pod(ctx, n("probes")); err != nil {
						return err
					}
					if st := p.container("c"); st == nil || st.RestartCount != restarts {
						return fmt.Errorf("container c restarted around the exec: %+v (%d restarts before)", st, restarts)
					}
					return nil
				})
				if err != nil {
					return err
				}
				_, err = c.waitPod(ctx, n("probes"), 2*time.Minute, "restarted by its liveness probe", func(p *podState) error {
					if st := p.container("c"); st == nil || st.RestartCount <= restarts {
						return fmt.Errorf("status %+v (%d restarts before /tmp/dead was made)", st, restarts)
					}
					return nil
				})
				return err
			},
		},
		{
			name: "Guaranteed and Burstable pods with CPU and memory limits",
			objs: []obj{
				podObj(n("guaranteed"), handler, obj{"containers": []obj{ctr("c", "exec sleep 3600", obj{"resources": obj{
					"requests": obj{"cpu": "200m", "memory": "64Mi"}, "limits": obj{"cpu": "200m", "memory": "64Mi"}}})}}),
				podObj(n("burstable"), handler, obj{"containers": []obj{ctr("c", "exec sleep 3600", obj{"resources": obj{
					"requests": obj{"cpu": "100m", "memory": "32Mi"}, "limits": obj{"memory": "128Mi"}}})}}),
			},
			check: func(ctx context.Context) error {
				for pod, limit := range map[string]int64{n("guaranteed"): 64 << 20, n("burstable"): 128 << 20} {
					p, err := c.waitReady(ctx, pod)
					if err != nil {
						return err
					}
					if gvisor {
						// The sandbox is one host process tree: its pod
						// cgroup on the node carries the limit.
						if err := e.hostPodMemoryLimit(p.Metadata.UID, limit); err != nil {
							return fmt.Errorf("%s: %w", pod, err)
						}
						continue
					}
					if err := memLimit(pod, "c", limit); err != nil {
						return fmt.Errorf("%s: %w", pod, err)
					}
				}
				if !gvisor {
					out, err := c.exec(ctx, n("guaranteed"), "c", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
					if err != nil || strings.TrimSpace(out) != "20000" {
						return fmt.Errorf("cpu quota seen in the Guaranteed container %q (want 20000): %v", out, err)
					}
				}
				return nil
			},
		},
		{
			name: "kubectl exec (-it), logs (-f), port-forward, attach",
			objs: []obj{podObj(n("io"), handler, obj{"containers": []obj{
				ctr("c", "echo started; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done", nil),
				ctr("web", "mkdir -p /www && echo forwarded-"+s+" > /www/index.html && exec httpd -f -p 8080 -h /www", nil),
			}})},
			check: func(ctx context.Context) error { return e.checkIO(ctx, n("io"), s) },
		},
		{
			name: "a crash-looping container: exit code, back-off, logs --previous",
			objs: []obj{podObj(n("crash"), handler, obj{"containers": []obj{ctr("c", "echo crash-run-$(date +%s%N); exit 3", nil)}})},
			check: func(ctx context.Context) error {
				_, err := c.waitPod(ctx, n("crash"), 3*time.Minute, "crash-looping", func(p *podState) error {
					st := p.container("c")
					if st == nil || st.RestartCount < 2 || st.LastState.Terminated == nil || st.LastState.Terminated.ExitCode != 3 ||
						st.State.Waiting == nil || st.State.Waiting.Reason != "CrashLoopBackOff" {
						return fmt.Errorf("status %+v", st)
					}
					return nil
				})
				if err != nil {
					return err
				}
				out, err := c.kubectl(ctx, "logs", "--previous", n("crash"), "-c", "c")
				if err != nil || !strings.Contains(out, "crash-run-") {
					return fmt.Errorf("logs --previous %q: %v", out, err)
				}
				return nil
			},
		},
		{
			name: "a container over its memory limit is OOMKilled",
			objs: []obj{podObj(n("oom"), handler, obj{"restartPolicy": "Never", "containers": []obj{
				ctr("c", "exec dd if=/dev/zero of=/dev/null bs=200M count=1", obj{"resources": obj{"limits": obj{"memory": "48Mi"}}}),
			}})},
			check: func(ctx context.Context) error {
				_, err := c.waitPod(ctx, n("oom"), 3*time.Minute, "OOMKilled", func(p *podState) error {
					st := p.container("c")
					if st == nil || st.State.Terminated == nil || st.State.Terminated.Reason != "OOMKilled" {
						return fmt.Errorf("status %+v", st)
					}
					return nil
				})
				return err
			},
		},
		{
			name: "terminationGracePeriod: SIGTERM first, SIGKILL after the grace period",
			objs: []obj{
				podObj(n("grace-term"), handler, obj{"terminationGracePeriodSeconds": 30,
					"volumes":    []obj{{"name": "host", "hostPath": obj{"path": hostDir}}},
					"containers": []obj{ctr("c", `trap 'echo got-TERM >> /host/term; exit 0' TERM; while true; do sleep 1; done`, obj{"volumeMounts": []obj{{"name": "host", "mountPath": "/host"}}})}}),
				podObj(n("grace-kill"), handler, obj{"terminationGracePeriodSeconds": 3,
					"volumes":    []obj{{"name": "host", "hostPath": obj{"path": hostDir}}},
					"containers": []obj{ctr("c", `trap 'echo ignored-TERM >> /host/kill' TERM; while true; do sleep 1; done`, obj{"volumeMounts": []obj{{"name": "host", "mountPath": "/host"}}})}}),
			},
			check: func(ctx context.Context) error {
				for _, p := range []string{n("grace-term"), n("grace-kill")} {
					if _, err := c.waitReady(ctx, p); err != nil {
						return err
					}
				}
				time.Sleep(2 * time.Second) // the traps are set
				for _, p := range []string{n("grace-term"), n("grace-kill")} {
					if _, err := c.kubectl(ctx, "delete", "pod", p, "--wait=true", "--timeout=90s"); err != nil {
						return err
					}
				}
				for file, want := range map[string]string{"term": "got-TERM", "kill": "ignored-TERM"} {
					b, _ := os.ReadFile(filepath.Join(hostDir, file))
					if !strings.Contains(string(b), want) {
						return fmt.Errorf("%s: %q, want %q (SIGTERM not delivered?)", file, b, want)
					}
				}
				return nil
			},
		},
	}
	if gvisor {
		list = append(list, scenario{
			name: "hostNetwork is refused with a clear event",
			objs: []obj{podObj(n("hostnet"), handler, obj{"hostNetwork": true, "containers": []obj{ctr("c", "exec sleep 3600", nil)}})},
			check: func(ctx context.Context) error {
				return c.waitEvent(ctx, n("hostnet"), "FailedCreatePodSandBox", "can't share the node's network (hostNetwork)")
			},
		}, scenario{
			// The kubelet refuses it from the features crimux reports.
			name: "hostUsers: false is refused with a clear event",
			objs: []obj{podObj(n("userns"), handler, obj{"hostUsers": false, "containers": []obj{ctr("c", "exec sleep 3600", nil)}})},
			check: func(ctx context.Context) error {
				return c.waitEvent(ctx, n("userns"), "FailedCreatePodSandBox", fmt.Sprintf("RuntimeClass handler %q does not support user namespaces", handler))
			},
		})
	} else {
		list = append(list,
			scenario{
				name: "a hostNetwork pod",
				objs: []obj{podObj(n("hostnet"), handler, obj{"hostNetwork": true, "containers": []obj{ctr("c", "exec sleep 3600", nil)}})},
				check: func(ctx context.Context) error {
					p, err := c.waitReady(ctx, n("hostnet"))
					if err != nil {
						return err
					}
					if p.Status.PodIP != p.Status.HostIP {
						return fmt.Errorf("pod IP %s, host IP %s", p.Status.PodIP, p.Status.HostIP)
					}
					out, err := c.exec(ctx, n("hostnet"), "c", "cat", "/proc/net/dev")
					if err != nil || !strings.Contains(out, e.env.Bridge) {
						return fmt.Errorf("the node's interfaces (%s) not seen: %q %v", e.env.Bridge, out, err)
					}
					return nil
				},
			},
			scenario{
				name: "hostUsers: false (a pod user namespace)",
				objs: []obj{podObj(n("userns"), handler, obj{"hostUsers": false, "containers": []obj{ctr("c", "exec sleep 3600", nil)}})},
				check: func(ctx context.Context) error {
					if _, err := c.waitReady(ctx, n("userns")); err != nil {
						return err
					}
					out, err := c.exec(ctx, n("userns"), "c", "cat", "/proc/self/uid_map")
					f := strings.Fields(out)
					if err != nil || len(f) != 3 || f[0] != "0" || f[1] == "0" {
						return fmt.Errorf("uid_map %q: %v", out, err)
					}
					return nil
				},
			})
	}
	return list
}

// waitEvent waits for an event of the pod with reason whose message has text.
func (c *cluster) waitEvent(ctx context.Context, pod, reason, text string) error {
	return waitFor(2*time.Minute, fmt.Sprintf("event %s %q for %s", reason, text, pod), func() error {
		evs := c.events(ctx, pod)
		for _, ev := range evs {
			if ev.Reason == reason && strings.Contains(ev.Message, text) {
				return nil
			}
		}
		return fmt.Errorf("events: %+v", evs)
	})
}

// hostPodMemoryLimit finds the pod's cgroup the kubelet made on the node
// and checks its memory limit.
func (e *e2e) hostPodMemoryLimit(uid string, want int64) error {
	root := filepath.Join("/sys/fs/cgroup/memory", e.c.cgroupRoot)
	var found string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasSuffix(p, "pod"+uid) {
			found = p
		}
		return nil
	})
	if found == "" {
		return fmt.Errorf("no cgroup for pod %s under %s", uid, root)
	}
	b, err := os.ReadFile(filepath.Join(found, "memory.limit_in_bytes"))
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(b)); got != strconv.FormatInt(want, 10) {
		return fmt.Errorf("pod cgroup %s limit %s, want %d", found, got, want)
	}
	return nil
}

// checkIO: kubectl exec (with and without a terminal), logs and logs -f,
// port-forward and attach, all through the API server and the kubelet to
// crimux's streaming server.
func (e *e2e) checkIO(ctx context.Context, pod, s string) error {
	c := e.c
	if _, err := c.waitReady(ctx, pod); err != nil {
		return err
	}
	if out, err := c.exec(ctx, pod, "c", "echo", "exec-ok"); err != nil || out != "exec-ok\n" {
		return fmt.Errorf("exec: %q %v", out, err)
	}
	// -it needs a terminal on kubectl's side: script(1) gives it one.
	kc := fmt.Sprintf("%s --kubeconfig %s exec -it %s -c c -- sh -c '[ -t 0 ] && echo IS-A-TTY'", filepath.Join(e.k8sBin, "kubectl"), c.kubeCfg, pod)
	out, err := exec.CommandContext(ctx, "script", "-qec", kc, "/dev/null").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "IS-A-TTY") {
		return fmt.Errorf("exec -it: %q %v", out, err)
	}
	if out, err := c.kubectl(ctx, "logs", pod, "-c", "c"); err != nil || !strings.HasPrefix(out, "started\n") {
		return fmt.Errorf("logs: %q %v", out, err)
	}
	if err := e.followUntil(ctx, []string{"logs", "-f", pod, "-c", "c", "--since=2s"}, "tick"); err != nil {
		return fmt.Errorf("logs -f: %w", err)
	}
	if err := e.followUntil(ctx, []string{"attach", pod, "-c", "c"}, "tick"); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	pf := exec.CommandContext(ctx, filepath.Join(e.k8sBin, "kubectl"), "--kubeconfig", c.kubeCfg, "port-forward", "pod/"+pod, fmt.Sprintf("%d:8080", port))
	pf.Stdout, pf.Stderr = io.Discard, io.Discard
	if err := pf.Start(); err != nil {
		return err
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	return waitFor(30*time.Second, "port-forward", func() error {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(b)) != "forwarded-"+s {
			return fmt.Errorf("body %q", b)
		}
		return nil
	})
}

// followUntil runs a kubectl command that streams and returns once a line
// with want was read.
func (e *e2e) followUntil(ctx context.Context, args []string, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.k8sBin, "kubectl"), append([]string{"--kubeconfig", e.c.kubeCfg}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			return nil
		}
	}
	return fmt.Errorf("no %q before the stream ended: %s", want, errb.String())
}
