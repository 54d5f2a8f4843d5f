package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/internal/metrics"
)

// remote is one remote CRI runtime: its connection, the crimux IDs of what
// crimux made there and the stream of its container events.
type remote struct {
	d      *Driver
	socket string
	conn   *grpc.ClientConn
	rs     runtime.RuntimeServiceClient
	is     runtime.ImageServiceClient

	mu sync.Mutex
	// pods and ctrs map crimux IDs to the remote's; back maps the remote's
	// (pods and containers) to crimux's. They are a cache of the io.crimux.id
	// labels on the remote, which survive a crimux restart.
	pods, ctrs, back map[string]string
	// netns are the pods' network namespaces (PodNetNS), by crimux ID.
	netns map[string]string
	// oomed are the containers whose OOM kill was reported, by crimux ID.
	oomed map[string]bool
}

// notFound: the remote has nothing with that crimux ID.
func notFound(kind, id string) error {
	return fmt.Errorf("%w: %s %s on the remote", backends.ErrNotFound, kind, id)
}

// mapErr keeps the remote's gRPC code, except NotFound and
// DeadlineExceeded, which become backends.ErrNotFound and ErrDeadline (the
// router's contract for missing objects and timed-out execs; the client
// gets the same codes).
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%w: %v", backends.ErrNotFound, status.Convert(err).Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: remote: %v", backends.ErrDeadline, status.Convert(err).Message())
	}
	return fmt.Errorf("remote: %w", err)
}

func (rm *remote) remember(m map[string]string, id, rid string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	m[id], rm.back[rid] = rid, id
}

func (rm *remote) forget(m map[string]string, id string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rid, ok := m[id]; ok {
		delete(rm.back, rid)
		delete(m, id)
	}
	delete(rm.oomed, id)
	delete(rm.netns, id)
}

// crimuxID is the crimux ID of a remote pod or container ("" if unknown).
func (rm *remote) crimuxID(rid string) string {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.back[rid]
}

// podID is the remote ID of crimux's pod id.
func (rm *remote) podID(ctx context.Context, id string) (string, error) {
	return rm.lookup(ctx, true, id)
}

// containerID is the remote ID of crimux's container id.
func (rm *remote) containerID(ctx context.Context, id string) (string, error) {
	return rm.lookup(ctx, false, id)
}

// lookup is the remote ID of crimux's pod (pod) or container id: known, or
// found by its label and remembered.
func (rm *remote) lookup(ctx context.Context, pod bool, id string) (string, error) {
	m, kind := rm.ctrs, "container"
	if pod {
		m, kind = rm.pods, "pod sandbox"
	}
	rm.mu.Lock()
	rid, ok := m[id]
	rm.mu.Unlock()
	if ok {
		return rid, nil
	}
	objs, err := rm.list(ctx, pod, map[string]string{labelID: id})
	if err != nil {
		return "", mapErr(err)
	}
	if len(objs) != 1 {
		return "", notFound(kind, id)
	}
	rm.remember(m, id, objs[0].id)
	return objs[0].id, nil
}

// object is a remote pod or container: its ID and labels.
type object struct {
	id     string
	labels map[string]string
}

// list lists the remote's pods (pod) or containers that carry the labels sel.
func (rm *remote) list(ctx context.Context, pod bool, sel map[string]string) ([]object, error) {
	var out []object
	if pod {
		resp, err := rm.rs.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: sel}})
		for _, p := range resp.GetItems() {
			out = append(out, object{p.Id, p.Labels})
		}
		return out, err
	}
	resp, err := rm.rs.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{LabelSelector: sel}})
	for _, c := range resp.GetContainers() {
		out = append(out, object{c.Id, c.Labels})
	}
	return out, err
}

// remove removes a remote pod (stopped first) or container; one the remote
// no longer has is not an error.
func (rm *remote) remove(ctx context.Context, pod bool, rid string) error {
	var err error
	if pod {
		_, _ = rm.rs.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: rid})
		_, err = rm.rs.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: rid})
	} else {
		_, err = rm.rs.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: rid})
	}
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// containerState is what the remote knows of a container, as a TaskState.
func (rm *remote) containerState(ctx context.Context, rid string) (backends.TaskState, *runtime.ContainerStatus, error) {
	resp, err := rm.rs.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: rid})
	if err != nil {
		return backends.TaskState{}, nil, mapErr(err)
	}
	return taskState(resp.Status), resp.Status, nil
}

func taskState(s *runtime.ContainerStatus) backends.TaskState {
	// The remote keeps its own record: CREATED there is never started.
	ts := backends.TaskState{State: s.State, ExitCode: s.ExitCode, Reason: s.Reason, NeverStarted: s.State == runtime.ContainerState_CONTAINER_CREATED}
	if s.FinishedAt != 0 {
		ts.ExitedAt = time.Unix(0, s.FinishedAt)
	}
	return ts
}

// reportExit tells the listener that crimux's container id exited, if the
// remote says so (the router ignores a second report of the same exit).
func (rm *remote) reportExit(ctx context.Context, id, rid string) error {
	ts, _, err := rm.containerState(ctx, rid)
	if err != nil {
		return err
	}
	if ts.State == runtime.ContainerState_CONTAINER_EXITED && rm.d.listener != nil {
		// The exit may be reported more than once (by the event, a stop, a
		// resync), which the listener ignores; the OOM is counted once.
		if ts.Reason == "OOMKilled" {
			rm.mu.Lock()
			first := !rm.oomed[id]
			rm.oomed[id] = true
			rm.mu.Unlock()
			if first {
				rm.d.listener.TaskOOM(id)
			}
		}
		rm.d.listener.TaskExited(id, ts)
	}
	return nil
}

// reportPodStop tells the listener that crimux's pod id is no longer ready.
func (rm *remote) reportPodStop(ctx context.Context, id, rid string) error {
	resp, err := rm.rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: rid})
	if err != nil {
		return mapErr(err)
	}
	if resp.Status.State == runtime.PodSandboxState_SANDBOX_NOTREADY && rm.d.listener != nil {
		rm.d.listener.TaskExited(id, backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitedAt: time.Now()})
	}
	return nil
}

// followEvents follows the remote's container events for as long as the
// driver runs and reports the exits of what crimux made there. After the
// stream breaks (the remote restarted) it asks about every container it
// knows, since events of the gap are lost.
func (rm *remote) followEvents(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		stream, err := rm.rs.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
		if err == nil {
			rm.resync(ctx)
			err = rm.handleEvents(ctx, stream)
			wait = time.Second
		}
		if ctx.Err() != nil {
			return
		}
		rm.d.log.Debug("remote event stream ended; following again", "remote", rm.socket, "error", err)
		metrics.ExitWatchReconnects.WithLabelValues(DriverName, "events").Inc()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func (rm *remote) handleEvents(ctx context.Context, stream grpc.ServerStreamingClient[runtime.ContainerEventResponse]) error {
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream closed")
			}
			return err
		}
		if ev.ContainerEventType != runtime.ContainerEventType_CONTAINER_STOPPED_EVENT {
			continue
		}
		id := rm.crimuxID(ev.ContainerId)
		if id == "" {
			continue // not crimux's, or not looked up since a restart (recovery asks)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rm.mu.Lock()
		_, isPod := rm.pods[id]
		rm.mu.Unlock()
		if isPod {
			err = rm.reportPodStop(cctx, id, ev.ContainerId)
		} else {
			err = rm.reportExit(cctx, id, ev.ContainerId)
		}
		cancel()
		if err != nil && !errors.Is(err, backends.ErrNotFound) {
			rm.d.log.Warn("state of a stopped remote container", "id", id, "remote", rm.socket, "error", err)
		}
	}
}

// resync asks about every container and pod crimux knows on the remote:
// exits during a gap in the event stream are reported.
func (rm *remote) resync(ctx context.Context) {
	rm.mu.Lock()
	ctrs := make(map[string]string, len(rm.ctrs))
	for id, rid := range rm.ctrs {
		ctrs[id] = rid
	}
	pods := make(map[string]string, len(rm.pods))
	for id, rid := range rm.pods {
		pods[id] = rid
	}
	rm.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for id, rid := range ctrs {
		if err := rm.reportExit(cctx, id, rid); errors.Is(err, backends.ErrNotFound) && rm.d.listener != nil {
			rm.d.listener.TaskExited(id, backends.TaskState{State: runtime.ContainerState_CONTAINER_EXITED, ExitCode: 255, ExitedAt: time.Now(), Reason: "Unknown"})
		}
	}
	for id, rid := range pods {
		_ = rm.reportPodStop(cctx, id, rid)
	}
}

// reap removes what a call that failed without an answer (a timeout, the
// remote going away) may still make on the remote: a pod or container
// with crimux's ID id. It looks until the remote has answered a few times
// with nothing (or for at most reapFor), in the background.
func (rm *remote) reap(id string, pod bool) {
	go func() {
		ctx, cancel := context.WithTimeout(rm.d.ctx, reapFor)
		defer cancel()
		sel := map[string]string{labelID: id}
		for empty := 0; empty < 5 && ctx.Err() == nil; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			objs, err := rm.list(cctx, pod, sel)
			if err == nil {
				empty++
			}
			for _, o := range objs {
				empty = 0
				err := rm.remove(cctx, pod, o.id)
				rm.d.log.Warn("removed what a failed call left on the remote", "id", id, "remote_id", o.id, "remote", rm.socket, "error", err)
			}
			ccancel()
		}
	}()
}

// reapFor bounds how long reap looks.
const reapFor = 10 * time.Minute

// mayHaveMade: a call failed without the remote saying it refused (it may
// have made something before or after the answer was lost).
func mayHaveMade(err error) bool {
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Unavailable, codes.Canceled, codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}
