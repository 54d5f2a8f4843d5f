package router

import (
	"context"
	"os"
	"path/filepath"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/sandbox"
)

// sweepOrphans removes what a crash between creating a pod or container and
// saving its record left behind: the backends' containers, the pod's network
// allocation (CNI DEL), its pinned network and user namespaces and its dir.
// Whatever a record names is left to recovery, and so is what an
// unreadable (quarantined) record may name.
func (r *Router) sweepOrphans(ctx context.Context, sbs []*sandbox.Sandbox, cts []*sandbox.Container, quarantined []string) {
	known := map[string]bool{}
	for _, id := range quarantined {
		known[id] = true
	}
	for _, sb := range sbs {
		known[sb.ID] = true
	}
	for _, c := range cts {
		known[c.ID] = true
	}
	for name, d := range r.set.Load().drivers {
		sw, ok := d.(backends.Sweeper)
		if !ok {
			continue
		}
		removed, err := sw.Sweep(ctx, func(id string) bool { return known[id] })
		if len(removed) > 0 {
			r.log.Warn("removed containers no record names (left by a crash)", "driver", name, "ids", removed)
		}
		if err != nil {
			r.log.Error("sweep orphaned containers", "driver", name, "error", err)
		}
	}
	confDirs := []string{""} // the default conf dir, then each handler's own
	for _, h := range r.conf().HandlerNames() {
		if d := r.conf().Handlers[h].CNIConfDir; d != "" {
			confDirs = append(confDirs, d)
		}
	}
	orphans := map[string]bool{}
	for _, dir := range []string{r.netnsDir(), r.usernsDir(), r.podsDir()} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !known[e.Name()] {
				orphans[e.Name()] = true
			}
		}
	}
	for id := range orphans {
		netns := filepath.Join(r.netnsDir(), id)
		if _, err := os.Stat(netns); err == nil {
			if err := r.cni.TeardownOrphan(confDirs, id, netns); err != nil {
				r.log.Warn("CNI DEL for a pod no record names", "id", id, "error", err)
			}
		}
		for _, p := range []string{netns, filepath.Join(r.usernsDir(), id)} {
			if err := sandbox.RemoveNetNS(p); err != nil {
				r.log.Error("remove an orphaned namespace", "path", p, "error", err)
			}
		}
		if err := os.RemoveAll(r.podDir(id)); err != nil {
			r.log.Error("remove an orphaned pod dir", "id", id, "error", err)
		}
		r.log.Warn("removed the namespaces and dir of a pod no record names (left by a crash)", "id", id)
	}
}
