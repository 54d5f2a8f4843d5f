package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/backends/containerd"
	"github.com/crimux/crimux/backends/cri"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/instance"
	"github.com/crimux/crimux/router"
)

// wiring is what a configuration reload changes: the drivers' handlers,
// the image service's per-handler snapshotters and stores, the router's
// handlers and the log level. Everything else needs a restart
// (conf.Reloadable).
type wiring struct {
	mu       sync.Mutex // one reload at a time
	args     []string   // serve's flags, read again at a reload
	cfg      *conf.Config
	instance string
	log      *slog.Logger
	level    *slog.LevelVar
	drv      *containerd.Driver
	fwd      *cri.Driver // nil until a handler is forwarded
	images   *image.Service
	rt       *router.Router
}

// handlersOf are the configured handlers that driver runs.
func handlersOf(cfg *conf.Config, driver string) map[string]conf.Handler {
	out := map[string]conf.Handler{}
	for name, h := range cfg.Handlers {
		if h.Driver == driver {
			out[name] = h
		}
	}
	return out
}

// drivers are the running drivers by name.
func (w *wiring) drivers() map[string]backends.Driver {
	out := map[string]backends.Driver{w.drv.Name(): w.drv}
	if w.fwd != nil {
		out[w.fwd.Name()] = w.fwd
	}
	return out
}

// imageHandlers are each handler's snapshotter ("" for requests naming
// none: the default handler's) and the forwarded handlers' own stores.
func (w *wiring) imageHandlers(cfg *conf.Config) (map[string]string, map[string]image.Store) {
	snapshotters := map[string]string{"": w.drv.Snapshotter(cfg.DefaultHandler)}
	own := map[string]image.Store{}
	for name := range cfg.Handlers {
		if sn := w.drv.Snapshotter(name); sn != "" {
			snapshotters[name] = sn
		}
		if w.fwd != nil {
			if st := w.fwd.Images(name); st != nil {
				own[name] = st
			}
		}
	}
	return snapshotters, own
}

// forwardTo gives the forwarding driver cfg's forwarded handlers, starting
// the driver if it is not running yet (and following its remotes' events
// once the router is there).
func (w *wiring) forwardTo(cfg *conf.Config) error {
	hs := handlersOf(cfg, cri.DriverName)
	if w.fwd != nil {
		return w.fwd.Reconfigure(hs)
	}
	if len(hs) == 0 {
		return nil
	}
	f, err := cri.New(cri.Options{Handlers: hs, Instance: w.instance, Log: w.log})
	if err != nil {
		return err
	}
	w.fwd = f
	if w.rt != nil {
		f.Start(w.rt)
	}
	return nil
}

// reload reads the configuration again and applies it, or changes nothing
// and returns every error (each naming its key).
func (w *wiring) reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	next, err := load(w.args)
	if err != nil {
		return err
	}
	if errs := w.cfg.Unreloadable(next); len(errs) > 0 {
		return errors.Join(errs...)
	}
	old := w.cfg
	if err := w.drv.Reconfigure(handlersOf(next, containerd.DriverName)); err != nil {
		return err
	}
	if err := w.forwardTo(next); err != nil {
		_ = w.drv.Reconfigure(handlersOf(old, containerd.DriverName))
		return err
	}
	if err := w.rt.Reconfigure(next, w.drivers()); err != nil {
		_ = w.drv.Reconfigure(handlersOf(old, containerd.DriverName))
		_ = w.forwardTo(old)
		return err
	}
	w.images.Reconfigure(w.imageHandlers(next))
	w.level.Set(parseLevel(next.LogLevel))
	w.cfg = next
	return nil
}

// reloadStatus is what crimux writes to state_dir after each reload, for
// `crimux reload` to report.
type reloadStatus struct {
	Time     time.Time `json:"time"`
	OK       bool      `json:"ok"`
	Errors   []string  `json:"errors,omitempty"`
	Handlers []string  `json:"handlers"`
}

func reloadStatusPath(stateDir string) string { return filepath.Join(stateDir, "reload-status.json") }

// handleReloads reloads at each SIGHUP until stop is closed.
func (w *wiring) handleReloads(stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-stop:
			return
		case <-hup:
		}
		st := reloadStatus{Time: time.Now()}
		if err := w.reload(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				st.Errors = append(st.Errors, line)
				w.log.Error("configuration reload refused; the configuration in force is unchanged", "error", line)
			}
		} else {
			st.OK = true
			w.log.Info("configuration reloaded", "handlers", w.cfg.HandlerNames(), "default_handler", w.cfg.DefaultHandler, "log_level", w.cfg.LogLevel)
		}
		w.mu.Lock()
		st.Handlers = w.cfg.HandlerNames()
		stateDir := w.cfg.StateDir
		w.mu.Unlock()
		if b, err := json.Marshal(st); err == nil {
			tmp := reloadStatusPath(stateDir) + ".tmp"
			if err := os.WriteFile(tmp, b, 0o644); err == nil {
				_ = os.Rename(tmp, reloadStatusPath(stateDir))
			}
		}
	}
}

// reloadCmd is `crimux reload`: it signals the crimux running on the
// configuration's state_dir (SIGHUP) and reports what it made of it.
func reloadCmd(args []string) error {
	cfg, err := load(args)
	if err != nil {
		return fmt.Errorf("%w\nnothing sent: the running crimux keeps its configuration", err)
	}
	pid, err := instance.Running(cfg.StateDir)
	if err != nil {
		return err
	}
	sent := time.Now()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal crimux (pid %d): %w", pid, err)
	}
	deadline := sent.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var st reloadStatus
		if b, err := os.ReadFile(reloadStatusPath(cfg.StateDir)); err == nil && json.Unmarshal(b, &st) == nil && !st.Time.Before(sent) {
			if !st.OK {
				return fmt.Errorf("crimux (pid %d) refused the configuration and keeps the one in force:\n  %s", pid, strings.Join(st.Errors, "\n  "))
			}
			fmt.Printf("crimux (pid %d) reloaded its configuration; handlers: %s\n", pid, strings.Join(st.Handlers, ", "))
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("crimux (pid %d) did not report the reload within 60 s; see its log", pid)
}
