package containerd

import (
	"context"
	"fmt"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
)

// watchOOM follows containerd's OOM events for crimux's namespace and tells
// the listener; exits are waited for per task, OOMs only come as events.
// While containerd is away it retries with a growing pause, so that a long
// outage logs a line every half minute, not every second.
func (d *Driver) watchOOM(ctx context.Context) {
	filter := fmt.Sprintf(`topic=="/tasks/oom",namespace==%q`, d.opts.Namespace)
	const maxPause = 30 * time.Second
	pause := time.Second
	for ctx.Err() == nil {
		since := time.Now()
		ch, errs := d.client.Subscribe(ctx, filter)
	recv:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if time.Since(since) > maxPause {
					pause = time.Second // it was up a while: a new outage
				}
				if err != nil && ctx.Err() == nil {
					d.log.Warn("containerd event stream broke; resubscribing", "error", err, "in", pause)
				}
				break recv
			case env := <-ch:
				if env == nil {
					break recv
				}
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if oom, ok := ev.(*eventsapi.TaskOOM); ok && d.opts.Listener != nil {
					d.log.Info("container hit its memory limit", "id", oom.ContainerID)
					d.opts.Listener.TaskOOM(oom.ContainerID)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, maxPause)
	}
}
