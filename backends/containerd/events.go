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
//
// The same stream carries the image record events that keep the driver's
// list of image records current (imagerecords.go).
func (d *Driver) watchEvents(ctx context.Context) {
	filter := fmt.Sprintf(`topic~="^/(tasks/(oom|exit|delete)|images/.*)$",namespace==%q`, d.opts.Namespace)
	broken := time.Time{}
	for n := 0; ctx.Err() == nil; n++ {
		subCtx, unsubscribe := context.WithCancel(ctx)
		ch, errs := d.client.Subscribe(subCtx, filter)
		probe := fmt.Sprintf("%s/%d", d.opts.Instance, n)
		probed := make(chan struct{})
		go d.probeImageEvents(subCtx, probe, probed)
		first := true
	recv:
		for {
			select {
			case <-ctx.Done():
				unsubscribe()
				d.images.records.setLive(false)
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
				if env.Topic == imageProbeTopic {
					if e, ok := ev.(*eventsapi.ImageUpdate); ok && e.Name == probe {
						select {
						case <-probed:
						default:
							close(probed)
							d.images.records.setLive(true)
						}
					}
					continue
				}
				switch e := ev.(type) {
				case *eventsapi.ImageCreate, *eventsapi.ImageUpdate, *eventsapi.ImageDelete:
					d.images.records.changed()
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
		unsubscribe()
		d.images.records.setLive(false)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// imageProbeTopic is the topic of the probe events crimux publishes to
// learn that its subscription delivers.
const imageProbeTopic = "/images/crimux-probe"

// probeImageEvents publishes a probe event named name, again with backoff
// (it may reach containerd before the subscription does), until probed is
// closed (it came back) or ctx ends.
func (d *Driver) probeImageEvents(ctx context.Context, name string, probed <-chan struct{}) {
	wait := 100 * time.Millisecond
	for {
		if err := d.client.EventService().Publish(d.ctx(ctx), imageProbeTopic, &eventsapi.ImageUpdate{Name: name}); err != nil && ctx.Err() == nil {
			d.log.Debug("publish the image event probe", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-probed:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
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
