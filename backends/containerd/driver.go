// Package containerd is crimux's containerd driver: pause containers, OCI specs
// built from CRI configs, tasks, IO with CRI-format logs, exec, stats and
// recovery, through the containerd v2 client in crimux's own namespace.
// No containerd type leaves this package.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
)

// Labels crimux puts on its containerd containers. They record the sandbox →
// handler binding so it survives restarts of crimux, containerd, or a config
// change that removed the handler.
const (
	labelKind     = "io.crimux/kind" // sandbox | container
	labelHandler  = "io.crimux/handler"
	labelSandbox  = "io.crimux/sandbox-id"
	labelInstance = "io.crimux/instance"
	labelLogDir   = "io.crimux/log-dir"
	labelLogPath  = "io.crimux/log-path" // relative to labelLogDir
	labelStdin    = "io.crimux/stdin"    // "", "open" or "once"
	labelTTY      = "io.crimux/tty"
	labelStopSig  = "io.crimux/stop-signal"
	// labelExit is "<code> <RFC 3339 time>", set when the task exited and
	// before it is deleted: a container with neither task nor this label never ran.
	labelExit      = "io.crimux/exit"
	kindSandbox    = "sandbox"
	kindContainer  = "container"
	builtinPauseRf = "localhost/crimux/pause:builtin"
)

// Options configure the driver.
type Options struct {
	Address   string
	Namespace string
	Timeout   time.Duration
	// StateDir holds IO fifos and per-sandbox shm mounts.
	StateDir string
	// RegistryHostsDir holds <host>/hosts.toml files.
	RegistryHostsDir string
	// PauseBinary is the static pause program for the built-in sandbox image.
	PauseBinary string
	// Handlers are this driver's handlers.
	Handlers map[string]conf.Handler
	// CgroupDriver is cgroupfs or systemd.
	CgroupDriver string
	// Instance identifies this crimux (its root_dir): it labels what crimux
	// creates, and Sweep removes only what carries it.
	Instance string
	Listener backends.Listener
	Log      *slog.Logger
}

// Driver is the containerd driver.
type Driver struct {
	client   *client.Client
	opts     Options
	log      *slog.Logger
	oomFloor int
	cgroups  nodeCgroups
	lsm      hostLSM

	// exits are recent exits seen as events (see watchEvents).
	exits exitCache

	aaMu     sync.Mutex // guards aaLoaded
	aaLoaded bool       // crimux's default AppArmor profile is loaded

	watchCtx  context.Context // the event watch's, started by the first Ready
	watchOnce sync.Once
	stop      context.CancelFunc // ends the event watch
	images    *Images

	mu       sync.Mutex // guards runtimes and procs
	runtimes map[string]backends.Runtime
	procs    map[string]*proc
}

var _ backends.Driver = (*Driver)(nil)

// New connects to containerd.
func New(o Options) (*Driver, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	// Reconnect within a second once containerd is back (gRPC's default
	// backoff grows to the client timeout): exits and events are waited for.
	reconnect := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: o.Timeout,
	})
	c, err := client.New(o.Address, client.WithDefaultNamespace(o.Namespace), client.WithTimeout(o.Timeout),
		client.WithExtraDialOpts([]grpc.DialOption{reconnect}))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %q: %w", o.Address, err)
	}
	floor, err := oomScoreFloor()
	if err != nil {
		c.Close()
		return nil, err
	}
	d := &Driver{client: c, opts: o, log: o.Log, oomFloor: floor, cgroups: detectCgroups(), lsm: hostLSM{AppArmor: apparmor.HostSupports(), SELinux: detectSELinux()}, runtimes: map[string]backends.Runtime{}, procs: map[string]*proc{}}
	d.images = &Images{d: d, pulls: map[string]*refLock{}, known: map[digest.Digest]entryInfo{}}
	for _, dir := range []string{filepath.Join(o.StateDir, "io"), filepath.Join(o.StateDir, "sandboxes")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			c.Close()
			return nil, fmt.Errorf("create state dir %q: %w", dir, err)
		}
	}
	for name, h := range o.Handlers {
		rt, err := d.newRuntime(name, h, true)
		if err != nil {
			c.Close()
			return nil, err
		}
		d.runtimes[name] = rt
	}
	d.watchCtx, d.stop = context.WithCancel(context.Background())
	return d, nil
}

// Name implements backends.Driver.
func (d *Driver) Name() string { return "containerd" }

// Runtime implements backends.Driver.
func (d *Driver) Runtime(handler string) backends.Runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.runtimes[handler]; ok {
		return r
	}
	// A handler that is no longer configured: enough to stop and remove,
	// which go through containerd whatever the shim was.
	r := &Runtime{d: d, name: handler, h: conf.DefaultRuncHandler()}
	d.runtimes[handler] = r
	return r
}

func (d *Driver) newRuntime(name string, h conf.Handler, configured bool) (backends.Runtime, error) {
	r := &Runtime{d: d, name: name, h: h, configured: configured}
	if h.RuntimeType == conf.RuntimeRunsc {
		g, err := newGvisorRuntime(r)
		if err != nil {
			return nil, err
		}
		r.opts = g.runtimeOptions
		return g, nil
	}
	r.opts = r.runcOptions
	return r, nil
}

// Ready implements backends.Driver.
// The first time containerd answers, the driver starts following its events.
func (d *Driver) Ready(ctx context.Context) error {
	// The client's health check waits for the connection with no end of its
	// own; the driver's timeout bounds it.
	ctx, cancel := context.WithTimeout(d.ctx(ctx), d.opts.Timeout)
	defer cancel()
	ok, err := d.client.IsServing(ctx)
	if err != nil {
		return fmt.Errorf("containerd at %q: %w", d.opts.Address, err)
	}
	if !ok {
		return fmt.Errorf("containerd at %q is not serving", d.opts.Address)
	}
	d.watchOnce.Do(func() { go d.watchEvents(d.watchCtx) })
	return nil
}

// Version implements backends.Driver.
func (d *Driver) Version(ctx context.Context) (string, error) {
	v, err := d.client.Version(d.ctx(ctx))
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return "containerd " + v.Version, nil
}

// Close implements backends.Driver.
func (d *Driver) Close() error {
	d.stop()
	return d.client.Close()
}

// ctx puts crimux's namespace on a context.
func (d *Driver) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, d.opts.Namespace)
}

// cleanupCtx is a fresh bounded context for rollback and cleanup work that
// must happen even when the request's context is done.
func (d *Driver) cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx(context.Background()), time.Minute)
}

// mapErr turns containerd errors into backend sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", backends.ErrNotFound, err)
	case errdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: %w", backends.ErrInvalid, err)
	case errdefs.IsFailedPrecondition(err):
		return fmt.Errorf("%w: %w", backends.ErrPrecondition, err)
	}
	return err
}

func isNotFound(err error) bool {
	return errdefs.IsNotFound(err) || errors.Is(err, backends.ErrNotFound) || status.Code(err) == codes.NotFound
}

var _ backends.Sweeper = (*Driver)(nil)

// Sweep implements backends.Sweeper: crimux's containers in containerd (its
// labels say so) that no record names are what a crash between creating
// them and saving their record left; they are removed like any other, task,
// snapshot and shm included, containers before the sandboxes they joined.
func (d *Driver) Sweep(ctx context.Context, known func(id string) bool) ([]string, error) {
	ctx = d.ctx(ctx)
	if d.opts.Instance == "" {
		return nil, errors.New("sweep: no instance ID to tell this crimux's containers from another's")
	}
	list, err := d.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", mapErr(err))
	}
	type orphan struct{ id, kind, handler string }
	var orphans []orphan
	for _, c := range list {
		if known(c.ID()) {
			continue
		}
		labels, err := c.Labels(ctx)
		if err != nil {
			continue
		}
		orphans = append(orphans, orphan{c.ID(), labels[labelKind], labels[labelHandler]})
	}
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].kind != kindSandbox && orphans[j].kind == kindSandbox })
	var removed []string
	var errs []error
	for _, o := range orphans {
		rt, _ := d.Runtime(o.handler).(interface {
			RemoveSandbox(context.Context, string) error
			RemoveContainer(context.Context, string) error
		})
		if rt == nil {
			continue
		}
		remove := rt.RemoveContainer
		if o.kind == kindSandbox {
			remove = rt.RemoveSandbox
		}
		// Bounded: a sweep must never hold crimux's start for good.
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := remove(rctx, o.id)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s %s: %w", o.kind, o.id, err))
			continue
		}
		removed = append(removed, o.id)
	}
	vols, err := d.sweepImageVolumes(ctx, known)
	removed = append(removed, vols...)
	return removed, errors.Join(append(errs, err)...)
}

// sweepImageVolumes removes the image volumes a crash left for containers
// no record names: their mounts under state_dir/imagevols, and the snapshot
// views labelled with this instance (a crash may fall between the view and
// its mount).
func (d *Driver) sweepImageVolumes(ctx context.Context, known func(string) bool) ([]string, error) {
	var removed []string
	var errs []error
	ents, _ := os.ReadDir(filepath.Join(d.opts.StateDir, "imagevols"))
	for _, e := range ents {
		if known(e.Name()) {
			continue
		}
		if err := d.unmountImageVolumes(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "imagevols/"+e.Name())
	}
	snapshotters := map[string]bool{}
	for _, h := range d.opts.Handlers {
		snapshotters[h.Snapshotter] = true
	}
	for sn := range snapshotters {
		svc := d.client.SnapshotService(sn)
		var keys []string
		err := svc.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if id, ok := imageVolumeContainer(info.Name); ok && !known(id) {
				keys = append(keys, info.Name)
			}
			return nil
		}, fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s snapshots: %w", sn, mapErr(err)))
			continue
		}
		for _, k := range keys {
			if err := svc.Remove(ctx, k); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove snapshot %s: %w", k, mapErr(err)))
				continue
			}
			removed = append(removed, "snapshot/"+k)
		}
	}
	return removed, errors.Join(errs...)
}
