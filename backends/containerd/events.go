package containerd

import (
	"context"
	"fmt"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"

	"github.com/crimux/crimux/internal/metrics"
)

// watchEvents follows containerd's task events for crimux's namespace: OOMs
// (which only come as events) go to the listener, and exits and deletes
// are kept a while in d.exits. An exit is normally learnt by waiting on the
// task; but when containerd restarts after a task exited, it deletes the
// task (its shim has no process left) and the only trace of the exit code
// is the event the shim forwards once containerd is back, so the stream is
// resubscribed at once, and quietly: one line when it breaks and one when
// it is back.
func (d *Driver) watchEvents(ctx context.Context) {
	filter := fmt.Sprintf(`topic~="^/tasks/(oom|exit|delete)$",namespace==%q`, d.opts.Namespace)
	broken := time.Time{}
	for ctx.Err() == nil {
		ch, errs := d.client.Subscribe(ctx, filter)
		first := true
	recv:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if broken.IsZero() && ctx.Err() == nil {
					broken = time.Now()
					metrics.ExitWatchReconnects.WithLabelValues(DriverName, "events").Inc()
					d.log.Warn("containerd event stream broke; resubscribing until it is back", "error", err)
				}
				break recv
			case env := <-ch:
				if env == nil {
					break recv
				}
				if first && !broken.IsZero() {
					d.log.Info("containerd event stream is back", "after", time.Since(broken).Round(time.Second))
					broken = time.Time{}
				}
				first = false
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				switch e := ev.(type) {
				case *eventsapi.TaskOOM:
					if d.listener != nil {
						d.log.Info("container hit its memory limit", "id", e.ContainerID)
						d.listener.TaskOOM(e.ContainerID)
					}
				case *eventsapi.TaskExit:
					if e.ID == e.ContainerID { // the main process, not an exec
						d.exits.put(e.ContainerID, exitInfo{code: e.ExitStatus, at: e.ExitedAt.AsTime()})
					}
				case *eventsapi.TaskDelete:
					if e.ID == "" || e.ID == e.ContainerID {
						d.exits.put(e.ContainerID, exitInfo{code: e.ExitStatus, at: e.ExitedAt.AsTime()})
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// exitInfo is an exit seen in an event.
type exitInfo struct {
	code uint32
	at   time.Time
	seen time.Time
}

// exitCache keeps recent exits from events by container ID, for a task
// containerd no longer has (see watchEvents).
type exitCache struct {
	mu    sync.Mutex // guards exits and wait
	exits map[string]exitInfo
	wait  chan struct{} // closed and replaced on each put
}

func (c *exitCache) put(id string, e exitInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exits == nil {
		c.exits = map[string]exitInfo{}
	}
	now := time.Now()
	for k, v := range c.exits {
		if now.Sub(v.seen) > 10*time.Minute {
			delete(c.exits, k)
		}
	}
	e.seen = now
	c.exits[id] = e
	if c.wait != nil {
		close(c.wait)
	}
	c.wait = make(chan struct{})
}

// get waits up to d for an exit of id to be seen.
func (c *exitCache) get(ctx context.Context, id string, d time.Duration) (exitInfo, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		e, ok := c.exits[id]
		if c.wait == nil {
			c.wait = make(chan struct{})
		}
		w := c.wait
		c.mu.Unlock()
		if ok {
			return e, true
		}
		select {
		case <-w:
		case <-deadline.C:
			return exitInfo{}, false
		case <-ctx.Done():
			return exitInfo{}, false
		}
	}
}
