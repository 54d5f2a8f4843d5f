package router

import (
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// eventBuffer is how many events a slow subscriber may fall behind before it
// misses some; the kubelet's evented PLEG relists when it sees a gap.
const eventBuffer = 1024

// events fans container lifecycle events out to GetContainerEvents streams.
type events struct {
	mu   sync.Mutex // guards subs
	subs map[chan *runtime.ContainerEventResponse]struct{}
}

func (e *events) subscribe() chan *runtime.ContainerEventResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs == nil {
		e.subs = map[chan *runtime.ContainerEventResponse]struct{}{}
	}
	ch := make(chan *runtime.ContainerEventResponse, eventBuffer)
	e.subs[ch] = struct{}{}
	return ch
}

func (e *events) unsubscribe(ch chan *runtime.ContainerEventResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subs, ch)
}

// publish never blocks: a full subscriber misses the event.
func (e *events) publish(ev *runtime.ContainerEventResponse) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	dropped := 0
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
			dropped++
		}
	}
	return dropped
}

// emit publishes an event for a container with its pod's current status.
func (r *Router) emit(c *sandbox.Container, typ runtime.ContainerEventType) {
	ev := &runtime.ContainerEventResponse{ContainerId: c.ID, ContainerEventType: typ, CreatedAt: time.Now().UnixNano()}
	if sb, err := r.sandboxes.Get(c.SandboxID); err == nil {
		ev.PodSandboxStatus = r.sandboxStatus(sb)
		for _, other := range r.containersOf(sb.ID) {
			ev.ContainersStatuses = append(ev.ContainersStatuses, r.containerStatus(other))
		}
	}
	if n := r.events.publish(ev); n > 0 {
		r.log.Warn("container event dropped for slow subscribers", "id", c.ID, "type", typ.String(), "subscribers", n)
	}
}
