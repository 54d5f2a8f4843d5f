package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
)

// Runtime forwards one handler to its remote.
type Runtime struct {
	d       *Driver
	rm      *remote // nil for a handler no longer configured (see remoteOf)
	name    string
	opts    HandlerOptions
	timeout time.Duration
	// configured: a handler of the configuration (not one kept for old pods).
	configured bool

	mu       sync.Mutex
	features *runtime.RuntimeHandlerFeatures
}

var (
	_ backends.Runtime        = (*Runtime)(nil)
	_ backends.NetworkOwner   = (*Runtime)(nil)
	_ backends.RemoteStreamer = (*Runtime)(nil)
	_ backends.Recoverer      = (*Runtime)(nil)
	_ backends.PodStatser     = (*Runtime)(nil)
	_ backends.NetNSReporter  = (*Runtime)(nil)
)

// Handler implements backends.Runtime.
func (r *Runtime) Handler() string { return r.name }

// OwnsNetwork implements backends.NetworkOwner: the remote runs its own CNI.
func (r *Runtime) OwnsNetwork() bool { return true }

// call bounds a remote call by the handler's timeout.
func (r *Runtime) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// remoteOf finds the remote that holds crimux's pod or container id: the
// handler's own, or for a handler no longer configured, whichever remote
// has it (by its label).
func (r *Runtime) remoteOf(ctx context.Context, id string, pod bool) (*remote, string, error) {
	remotes := []*remote{r.rm}
	if r.rm == nil {
		remotes = r.d.remoteList()
	}
	var last error = notFound("object", id)
	for _, rm := range remotes {
		var rid string
		var err error
		if pod {
			rid, err = rm.podID(ctx, id)
		} else {
			rid, err = rm.containerID(ctx, id)
		}
		if err == nil {
			return rm, rid, nil
		}
		last = err
	}
	return nil, "", last
}

// on runs call against the remote that holds crimux's pod (pod) or
// container id, with the remote's ID, bounded by the handler's timeout;
// the remote's errors are mapped (mapErr).
func (r *Runtime) on(ctx context.Context, id string, pod bool, call func(ctx context.Context, rm *remote, rid string) error) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, pod)
	if err != nil {
		return err
	}
	return mapErr(call(ctx, rm, rid))
}

// labelled is labels with crimux's ID and instance added.
func (r *Runtime) labelled(labels map[string]string, id string) map[string]string {
	out := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		out[k] = v
	}
	out[labelID], out[labelInstance] = id, r.d.instance
	return out
}

// RunSandbox implements backends.Runtime: the remote runs the pod, with its
// own network, and its IPs are returned.
func (r *Runtime) RunSandbox(ctx context.Context, sb backends.Sandbox) (backends.TaskState, error) {
	if r.rm == nil {
		return backends.TaskState{}, fmt.Errorf("%w: handler %q is not configured", backends.ErrInvalid, r.name)
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	cfg := proto.Clone(sb.Config).(*runtime.PodSandboxConfig)
	cfg.Labels = r.labelled(cfg.Labels, sb.ID)
	resp, err := r.rm.rs.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: r.opts.RemoteHandler})
	if err != nil {
		if mayHaveMade(err) {
			r.rm.reap(sb.ID, true)
		}
		return backends.TaskState{}, mapErr(err)
	}
	r.rm.remember(r.rm.pods, sb.ID, resp.PodSandboxId)
	st, err := r.rm.rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
	if err != nil {
		r.rollback(sb.ID, resp.PodSandboxId)
		return backends.TaskState{}, fmt.Errorf("status of the remote pod: %w", mapErr(err))
	}
	ts := backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING}
	if n := st.Status.GetNetwork(); n != nil && n.Ip != "" {
		ts.IPs = append(ts.IPs, n.Ip)
		for _, ip := range n.AdditionalIps {
			ts.IPs = append(ts.IPs, ip.Ip)
		}
	}
	return ts, nil
}

// rollback removes a remote pod whose start failed half-way.
func (r *Runtime) rollback(id, rid string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if err := r.rm.remove(ctx, true, rid); err != nil {
		r.d.log.Error("roll back remote pod", "id", id, "remote_id", rid, "error", err)
	}
	r.rm.forget(r.rm.pods, id)
}

// StopSandbox implements backends.Runtime.
func (r *Runtime) StopSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, true)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := rm.rs.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: rid}); err != nil && !errors.Is(mapErr(err), backends.ErrNotFound) {
		return mapErr(err)
	}
	return nil
}

// RemoveSandbox implements backends.Runtime.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, true)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := rm.rs.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: rid}); err != nil && !errors.Is(mapErr(err), backends.ErrNotFound) {
		return mapErr(err)
	}
	rm.forget(rm.pods, id)
	return nil
}

// CreateContainer implements backends.Runtime. The remote resolves the
// image in its own store (the router found it there) and writes the log.
func (r *Runtime) CreateContainer(ctx context.Context, c backends.Container) (backends.User, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, prid, err := r.remoteOf(ctx, c.Sandbox.ID, true)
	if err != nil {
		return backends.User{}, fmt.Errorf("pod sandbox %s: %w", c.Sandbox.ID, err)
	}
	cfg := proto.Clone(c.Config).(*runtime.ContainerConfig)
	cfg.Labels = r.labelled(cfg.Labels, c.ID)
	sbCfg := proto.Clone(c.Sandbox.Config).(*runtime.PodSandboxConfig)
	sbCfg.Labels = r.labelled(sbCfg.Labels, c.Sandbox.ID)
	resp, err := rm.rs.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: prid, Config: cfg, SandboxConfig: sbCfg})
	if err != nil {
		if mayHaveMade(err) {
			rm.reap(c.ID, false)
		}
		return backends.User{}, mapErr(err)
	}
	rm.remember(rm.ctrs, c.ID, resp.ContainerId)
	var u backends.User
	if _, st, err := rm.containerState(ctx, resp.ContainerId); err == nil {
		if l := st.GetUser().GetLinux(); l != nil {
			u = backends.User{UID: l.Uid, GID: l.Gid, Groups: l.SupplementalGroups}
		}
	}
	return u, nil
}

// StartContainer implements backends.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, id string) (backends.TaskState, error) {
	err := r.on(ctx, id, false, func(ctx context.Context, rm *remote, rid string) error {
		_, err := rm.rs.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: rid})
		return err
	})
	if err != nil {
		return backends.TaskState{}, err
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING}, nil
}

// StopContainer implements backends.Runtime; the exit is reported to the
// listener before it returns, as the router expects.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+timeout)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, false)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := rm.rs.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: rid, Timeout: int64(timeout / time.Second)}); err != nil {
		if err = mapErr(err); errors.Is(err, backends.ErrNotFound) {
			return nil
		}
		return err
	}
	if err := rm.reportExit(ctx, id, rid); err != nil && !errors.Is(err, backends.ErrNotFound) {
		return err
	}
	return nil
}

// RemoveContainer implements backends.Runtime.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, false)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := rm.rs.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: rid}); err != nil && !errors.Is(mapErr(err), backends.ErrNotFound) {
		return mapErr(err)
	}
	rm.forget(rm.ctrs, id)
	return nil
}

// State implements backends.Runtime: a container's state, or for a pod
// RUNNING while the remote has it ready and EXITED once not.
func (r *Runtime) State(ctx context.Context, id string) (backends.TaskState, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	if rm, rid, err := r.remoteOf(ctx, id, false); err == nil {
		ts, _, err := rm.containerState(ctx, rid)
		return ts, err
	} else if !errors.Is(err, backends.ErrNotFound) {
		return backends.TaskState{}, err
	}
	rm, rid, err := r.remoteOf(ctx, id, true)
	if err != nil {
		return backends.TaskState{}, err
	}
	resp, err := rm.rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: rid})
	if err != nil {
		return backends.TaskState{}, mapErr(err)
	}
	if resp.Status.State == runtime.PodSandboxState_SANDBOX_READY {
		return backends.TaskState{State: runtime.ContainerState_CONTAINER_RUNNING}, nil
	}
	return backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitedAt: time.Now()}, nil
}

// Recover implements backends.Recoverer: what the remote knows of each
// pod and container (its IDs are found again by their labels), so that the
// event stream reports their exits from now on.
func (r *Runtime) Recover(ctx context.Context, sandboxes []backends.Sandbox, containers []backends.Container) (map[string]backends.TaskState, map[string]error) {
	states, failed := map[string]backends.TaskState{}, map[string]error{}
	for _, sb := range sandboxes {
		if st, err := r.State(ctx, sb.ID); err != nil {
			failed[sb.ID] = err
		} else {
			states[sb.ID] = st
		}
	}
	for _, c := range containers {
		if st, err := r.State(ctx, c.ID); err != nil {
			failed[c.ID] = err
		} else {
			states[c.ID] = st
		}
	}
	return states, failed
}

// ExecSync implements backends.Runtime.
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (backends.ExecResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+timeout)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, id, false)
	if err != nil {
		return backends.ExecResult{}, err
	}
	resp, err := rm.rs.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: rid, Cmd: cmd, Timeout: int64(timeout / time.Second)})
	if err != nil {
		return backends.ExecResult{}, mapErr(err)
	}
	return backends.ExecResult{Stdout: resp.Stdout, Stderr: resp.Stderr, ExitCode: resp.ExitCode}, nil
}

// errStreamed: the router asks RemoteStreamer instead.
var errStreamed = fmt.Errorf("%w: a forwarded handler's streams are served by its remote", backends.ErrUnsupported)

// Exec implements backends.Runtime; the remote's streaming server serves it (ExecURL).
func (r *Runtime) Exec(context.Context, string, []string, backends.Streams) error {
	return errStreamed
}

// Attach implements backends.Runtime; the remote's streaming server serves it (AttachURL).
func (r *Runtime) Attach(context.Context, string, backends.Streams) error { return errStreamed }

// ExecURL implements backends.RemoteStreamer: the remote's URL, as is.
func (r *Runtime) ExecURL(ctx context.Context, req *runtime.ExecRequest) (url string, err error) {
	err = r.on(ctx, req.ContainerId, false, func(ctx context.Context, rm *remote, rid string) error {
		fwd := proto.Clone(req).(*runtime.ExecRequest)
		fwd.ContainerId = rid
		resp, err := rm.rs.Exec(ctx, fwd)
		url = resp.GetUrl()
		return err
	})
	return url, err
}

// AttachURL implements backends.RemoteStreamer.
func (r *Runtime) AttachURL(ctx context.Context, req *runtime.AttachRequest) (url string, err error) {
	err = r.on(ctx, req.ContainerId, false, func(ctx context.Context, rm *remote, rid string) error {
		fwd := proto.Clone(req).(*runtime.AttachRequest)
		fwd.ContainerId = rid
		resp, err := rm.rs.Attach(ctx, fwd)
		url = resp.GetUrl()
		return err
	})
	return url, err
}

// PortForwardURL implements backends.RemoteStreamer.
func (r *Runtime) PortForwardURL(ctx context.Context, req *runtime.PortForwardRequest) (url string, err error) {
	err = r.on(ctx, req.PodSandboxId, true, func(ctx context.Context, rm *remote, rid string) error {
		fwd := proto.Clone(req).(*runtime.PortForwardRequest)
		fwd.PodSandboxId = rid
		resp, err := rm.rs.PortForward(ctx, fwd)
		url = resp.GetUrl()
		return err
	})
	return url, err
}

// ReopenLog implements backends.Runtime.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	return r.on(ctx, id, false, func(ctx context.Context, rm *remote, rid string) error {
		_, err := rm.rs.ReopenContainerLog(ctx, &runtime.ReopenContainerLogRequest{ContainerId: rid})
		return err
	})
}

// UpdateResources implements backends.Runtime.
func (r *Runtime) UpdateResources(ctx context.Context, id string, res *runtime.LinuxContainerResources) error {
	return r.on(ctx, id, false, func(ctx context.Context, rm *remote, rid string) error {
		_, err := rm.rs.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: rid, Linux: res})
		return err
	})
}

// Stats implements backends.Runtime: the remote's, under crimux's ID.
func (r *Runtime) Stats(ctx context.Context, id string) (st *runtime.ContainerStats, err error) {
	err = r.on(ctx, id, false, func(ctx context.Context, rm *remote, rid string) error {
		resp, err := rm.rs.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: rid})
		st = resp.GetStats()
		return err
	})
	return st, err
}

// Features implements backends.Runtime: what the remote reports for the
// remote handler (learnt at each readiness check; none before the first).
func (r *Runtime) Features() *runtime.RuntimeHandlerFeatures {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.features == nil {
		return &runtime.RuntimeHandlerFeatures{}
	}
	return proto.Clone(r.features).(*runtime.RuntimeHandlerFeatures)
}

// setFeatures keeps the remote handler's features from a Status answer.
func (r *Runtime) setFeatures(resp *runtime.StatusResponse) {
	for _, h := range resp.GetRuntimeHandlers() {
		if h.Name == r.opts.RemoteHandler && h.Features != nil {
			r.mu.Lock()
			r.features = h.Features
			r.mu.Unlock()
			return
		}
	}
}

// PodStats implements backends.PodStatser: the remote's stats of the pod,
// its containers under crimux's IDs.
func (r *Runtime) PodStats(ctx context.Context, sandboxID string) (st *runtime.PodSandboxStats, err error) {
	err = r.on(ctx, sandboxID, true, func(ctx context.Context, rm *remote, rid string) error {
		resp, err := rm.rs.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: rid})
		if err != nil {
			return err
		}
		st = resp.Stats
		for _, cs := range st.GetLinux().GetContainers() {
			if a := cs.GetAttributes(); a != nil {
				a.Id = rm.crimuxID(a.Id)
			}
		}
		return nil
	})
	return st, err
}

// PodNetNS implements backends.NetNSReporter: the pod's netns as the
// remote's verbose status tells it (the network namespace of its runtime
// spec, else that of its pid), looked up once per pod.
func (r *Runtime) PodNetNS(ctx context.Context, sandboxID string) (string, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	rm, rid, err := r.remoteOf(ctx, sandboxID, true)
	if err != nil {
		return "", err
	}
	rm.mu.Lock()
	p, ok := rm.netns[sandboxID]
	rm.mu.Unlock()
	if ok {
		return p, nil
	}
	resp, err := rm.rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: rid, Verbose: true})
	if err != nil {
		return "", mapErr(err)
	}
	p = netnsOf(resp.Info)
	if p == "" {
		return "", fmt.Errorf("the remote's status of pod %s names no network namespace", sandboxID)
	}
	rm.mu.Lock()
	rm.netns[sandboxID] = p
	rm.mu.Unlock()
	return p, nil
}

// netnsOf finds a pod's netns in a verbose PodSandboxStatus's info (its
// "info" document, as containerd and CRI-O write it).
func netnsOf(info map[string]string) string {
	var v struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		return ""
	}
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && filepath.IsAbs(ns.Path) {
			return ns.Path
		}
	}
	if v.Pid > 0 {
		return fmt.Sprintf("/proc/%d/ns/net", v.Pid)
	}
	return ""
}
