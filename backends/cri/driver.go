package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
)

// Labels crimux puts on what it makes on a remote: the crimux ID it stands
// for (how an ID is found again after a restart) and the crimux instance
// (what a crash leaves is swept by it).
const (
	labelID       = "io.crimux.id"
	labelInstance = "io.crimux.instance"
)

// Options are what the driver is built from.
type Options struct {
	// Handlers are this driver's handlers; their options were checked by
	// ConfDriver's Check.
	Handlers map[string]conf.Handler
	// Instance labels what crimux makes on the remotes.
	Instance string
	Log      *slog.Logger
}

// Driver forwards handlers to remote CRI runtimes, one connection per endpoint.
type Driver struct {
	log      *slog.Logger
	instance string
	listener backends.Listener
	ctx      context.Context
	stop     context.CancelFunc

	mu       sync.Mutex // guards runtimes, remotes and started
	runtimes map[string]*Runtime
	remotes  map[string]*remote // by socket
	started  bool
}

var (
	_ backends.Driver           = (*Driver)(nil)
	_ backends.Sweeper          = (*Driver)(nil)
	_ backends.HandlerReadiness = (*Driver)(nil)
)

// New builds the driver; it does not wait for the remotes (one that is
// down makes only its handlers not ready).
func New(o Options) (*Driver, error) {
	d := &Driver{log: o.Log, instance: o.Instance, remotes: map[string]*remote{}, runtimes: map[string]*Runtime{}}
	d.ctx, d.stop = context.WithCancel(context.Background())
	if err := d.Reconfigure(o.Handlers); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Reconfigure replaces the driver's handlers (at start, and at a
// configuration reload): on any error nothing changes. An unchanged handler
// keeps its runtime; a new endpoint gets a connection (and its events are
// followed once the driver started). Pods of a removed handler are found
// on any remote the driver knows (Runtime of a handler no longer
// configured), so they can still be stopped and removed.
func (d *Driver) Reconfigure(hs map[string]conf.Handler) error {
	type want struct {
		name string
		opts HandlerOptions
	}
	var wants []want
	var errs []error
	for _, name := range sortedNames(hs) {
		opts, herrs := DecodeOptions(hs[name].Options)
		for _, err := range herrs {
			errs = append(errs, fmt.Errorf("handlers.%s.%w", name, err))
		}
		wants = append(wants, want{name, opts})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	built := map[string]*Runtime{}
	for _, w := range wants {
		if r, ok := d.runtimes[w.name]; ok && r.configured && r.opts == w.opts {
			built[w.name] = r
			continue
		}
		rm, err := d.remote(w.opts.socket())
		if err != nil {
			return fmt.Errorf("handlers.%s.endpoint: %w", w.name, err)
		}
		built[w.name] = &Runtime{d: d, rm: rm, name: w.name, opts: w.opts, timeout: w.opts.timeout(), configured: true}
	}
	d.runtimes = built
	return nil
}

// remote returns the connection to socket, made on first use (d.mu held).
func (d *Driver) remote(socket string) (*remote, error) {
	if rm, ok := d.remotes[socket]; ok {
		return rm, nil
	}
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, err
	}
	rm := &remote{d: d, socket: socket, conn: conn, rs: runtime.NewRuntimeServiceClient(conn), is: runtime.NewImageServiceClient(conn),
		pods: map[string]string{}, ctrs: map[string]string{}, back: map[string]string{}, netns: map[string]string{}, oomed: map[string]bool{}}
	d.remotes[socket] = rm
	if d.started {
		go rm.followEvents(d.ctx)
	}
	return rm, nil
}

// remoteList is every remote the driver knows, by socket.
func (d *Driver) remoteList() []*remote {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*remote, 0, len(d.remotes))
	for _, s := range sortedKeys(d.remotes) {
		out = append(out, d.remotes[s])
	}
	return out
}

func sortedNames(hs map[string]conf.Handler) []string {
	names := make([]string, 0, len(hs))
	for n := range hs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Start gives the driver its listener and starts following each remote's
// container events. Call it once, before the router recovers.
func (d *Driver) Start(l backends.Listener) {
	d.listener = l
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = true
	for _, rm := range d.remotes {
		go rm.followEvents(d.ctx)
	}
}

// Name implements backends.Driver.
func (d *Driver) Name() string { return DriverName }

// Runtime implements backends.Driver. A handler that is no longer
// configured gets a runtime that finds its pods on any remote it knows (by
// the crimux ID label), enough to stop and remove them.
func (d *Driver) Runtime(handler string) backends.Runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.runtimes[handler]; ok {
		return r
	}
	r := &Runtime{d: d, name: handler, timeout: DefaultTimeout}
	d.runtimes[handler] = r
	return r
}

// Ready implements backends.Driver: the driver itself is always ready; each
// remote's readiness is its handlers' (HandlerReady).
func (d *Driver) Ready(context.Context) error { return nil }

// HandlerReady implements backends.HandlerReadiness: the remote answers
// Status in time and reports its runtime ready.
func (d *Driver) HandlerReady(ctx context.Context, handler string) error {
	d.mu.Lock()
	r, ok := d.runtimes[handler]
	d.mu.Unlock()
	if !ok || r.rm == nil {
		return fmt.Errorf("handler %q is not forwarded", handler)
	}
	ctx, cancel := context.WithTimeout(ctx, min(r.timeout, 5*time.Second))
	defer cancel()
	resp, err := r.rm.rs.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		return fmt.Errorf("remote %s: %w", r.opts.Endpoint, err)
	}
	r.setFeatures(resp)
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtime.RuntimeReady && !c.Status {
			return fmt.Errorf("remote %s: runtime not ready: %s %s", r.opts.Endpoint, c.Reason, c.Message)
		}
	}
	return nil
}

// Version implements backends.Driver: each remote's runtime and version.
func (d *Driver) Version(ctx context.Context) (string, error) {
	var out []string
	for _, rm := range d.remoteList() {
		socket := rm.socket
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := rm.rs.Version(cctx, &runtime.VersionRequest{})
		cancel()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: unreachable", socket))
			continue
		}
		out = append(out, fmt.Sprintf("%s %s at %s", v.RuntimeName, v.RuntimeVersion, socket))
	}
	if len(out) == 0 {
		return "no remotes", nil
	}
	return fmt.Sprint(out), nil
}

// Close implements backends.Driver.
func (d *Driver) Close() error {
	d.stop()
	for _, rm := range d.remoteList() {
		rm.conn.Close()
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Sweep implements backends.Sweeper: it removes the pods and containers
// this crimux made on each remote that no record names (a crash between the
// remote call and the record).
func (d *Driver) Sweep(ctx context.Context, known func(id string) bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, rm := range d.remoteList() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		// Pods first (their containers go with them), then containers of
		// known pods whose CreateContainer crashed before its record.
		for _, pod := range []bool{true, false} {
			objs, err := rm.list(ctx, pod, map[string]string{labelInstance: d.instance})
			if err != nil {
				errs = append(errs, fmt.Errorf("remote %s: %w", rm.socket, err))
				continue
			}
			for _, o := range objs {
				id := o.labels[labelID]
				if id == "" || known(id) {
					continue
				}
				if err := rm.remove(ctx, pod, o.id); err != nil {
					errs = append(errs, fmt.Errorf("remote %s: remove %s: %w", rm.socket, o.id, err))
					continue
				}
				removed = append(removed, id)
			}
		}
		cancel()
	}
	return removed, errors.Join(errs...)
}
