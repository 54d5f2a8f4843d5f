package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/conf"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	// Handlers are this driver's handlers; their options were checked by
	// ConfDriver's Check, and New makes the checks that need the machine.
	Handlers map[string]conf.Handler
	// CgroupDriver is cgroupfs or systemd.
	CgroupDriver string
	// Instance identifies this crimux (its root_dir): it labels what crimux
	// creates, and Sweep removes only what carries it.
	Instance string
	Log      *slog.Logger
}

// ErrConfig wraps what New finds wrong with the handlers (a runtime binary
// missing, say): unlike containerd not answering, waiting won't mend it.
var ErrConfig = errors.New("configuration")

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

	// listener hears of exits and OOMs; set by Start, before anything that
	// reports runs, and only read after.
	listener backends.Listener

	watchCtx  context.Context // the event watch's, started by Start
	watchOnce sync.Once
	stop      context.CancelFunc // ends the event watch
	images    *Images
	// imageCache is what image manifests say, read once (imagecache.go).
	imageCache *imageCache
	// leases are those container creation holds (leases.go).
	leases *leasePool

	mu       sync.Mutex // guards runtimes, procs, taskGone and made
	runtimes map[string]backends.Runtime
	procs    map[string]*proc
	// made holds containers made by this crimux and not started yet (tasks.go).
	made map[string]*made
	// taskGone names those whose exit watch handled and whose task it
	// deleted, until they are removed.
	taskGone map[string]bool
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
	tc := &taskClient{}
	c, err := client.New(o.Address, client.WithDefaultNamespace(o.Namespace), client.WithTimeout(o.Timeout),
		client.WithExtraDialOpts([]grpc.DialOption{reconnect}), client.WithServices(client.WithTaskClient(tc)))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %q: %w", o.Address, err)
	}
	tc.TasksClient = tasksapi.NewTasksClient(c.Conn().(*grpc.ClientConn))
	floor, err := oomScoreFloor()
	if err != nil {
		c.Close()
		return nil, err
	}
	d := &Driver{client: c, opts: o, log: o.Log, oomFloor: floor, cgroups: detectCgroups(), lsm: hostLSM{AppArmor: apparmor.HostSupports(), SELinux: detectSELinux()}, runtimes: map[string]backends.Runtime{}, procs: map[string]*proc{}, taskGone: map[string]bool{}, made: map[string]*made{}}
	d.images = &Images{d: d, pulls: map[string]*refLock{}, known: map[digest.Digest]entryInfo{}}
	d.imageCache = newImageCache()
	d.leases = &leasePool{d: d}
	for _, dir := range []string{filepath.Join(o.StateDir, "io"), filepath.Join(o.StateDir, "sandboxes")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			c.Close()
			return nil, fmt.Errorf("create state dir %q: %w", dir, err)
		}
	}
	var errs []error
	for _, name := range sortedHandlerNames(o.Handlers) {
		rt, herrs := d.newRuntime(name, o.Handlers[name].Options)
		for _, err := range herrs {
			errs = append(errs, fmt.Errorf("handlers.%s.%w", name, err))
		}
		if rt != nil {
			d.runtimes[name] = rt
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	d.watchCtx, d.stop = context.WithCancel(context.Background())
	return d, nil
}

// Start gives the driver its listener and starts following containerd's
// events; exits and OOMs are reported from then on. Call it once, before
// the router recovers (which adopts running tasks).
func (d *Driver) Start(l backends.Listener) {
	d.listener = l
	d.watchOnce.Do(func() { go d.watchEvents(d.watchCtx) })
}

func sortedHandlerNames(hs map[string]conf.Handler) []string {
	names := make([]string, 0, len(hs))
	for n := range hs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
	o := DefaultRuncHandler()
	r := &Runtime{d: d, name: handler, opts: o, kind: shimKind{}}
	d.runtimes[handler] = r
	return r
}

// Reconfigure replaces the driver's handlers (a configuration reload). Every
// new or changed handler is built and checked first; on any error nothing
// changes. An unchanged handler keeps its runtime (and what it watches); a
// changed one gets a new runtime for what starts from now on; the pods of a
// removed one are stopped and removed through the runtime Runtime gives for
// a handler no longer configured.
func (d *Driver) Reconfigure(hs map[string]conf.Handler) error {
	d.mu.Lock()
	old := d.runtimes
	d.mu.Unlock()
	built := map[string]backends.Runtime{}
	var errs []error
	for _, name := range sortedHandlerNames(hs) {
		o, _ := DecodeOptions(hs[name].Options)
		if r, ok := old[name].(*Runtime); ok && r.configured && reflect.DeepEqual(r.opts, o) {
			built[name] = r
			continue
		}
		rt, herrs := d.newRuntime(name, hs[name].Options)
		for _, err := range herrs {
			errs = append(errs, fmt.Errorf("handlers.%s.%w", name, err))
		}
		if rt != nil {
			built[name] = rt
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.mu.Lock()
	d.runtimes = built
	d.mu.Unlock()
	return nil
}

// newRuntime decodes a handler's options, makes the checks that need the
// machine (binaries) and builds its runtime. Errors name their key below
// the handler.
func (d *Driver) newRuntime(name string, raw map[string]any) (*Runtime, []error) {
	o, errs := DecodeOptions(raw)
	errs = append(errs, o.probe()...)
	if len(errs) > 0 {
		return nil, errs
	}
	kind, err := d.newKind(name, o)
	if err != nil {
		return nil, []error{fmt.Errorf("runtime_path: %w", err)}
	}
	return &Runtime{d: d, name: name, opts: o, kind: kind, configured: true}, nil
}

// snapshotters are the configured handlers' snapshotters, each once, sorted.
func (d *Driver) snapshotters() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, rt := range d.runtimes {
		if r, ok := rt.(*Runtime); ok && r.configured && !seen[r.opts.Snapshotter] {
			seen[r.opts.Snapshotter] = true
			out = append(out, r.opts.Snapshotter)
		}
	}
	sort.Strings(out)
	return out
}

// Snapshotter is the snapshotter a configured handler unpacks images with
// ("" for a handler this driver doesn't have).
func (d *Driver) Snapshotter(handler string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.runtimes[handler].(*Runtime); ok && r.configured {
		return r.opts.Snapshotter
	}
	return ""
}

// Ready implements backends.Driver.
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	d.leases.drain(ctx)
	cancel()
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
