// Package router is crimux's CRI front: it implements every RPC of the CRI
// RuntimeService and ImageService, resolves the runtime handler of each pod,
// owns IDs, names and the sandbox/container stores, and maps internal errors
// to gRPC codes in one interceptor. It never talks to containerd directly.
package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/metrics"
	"github.com/crimux/crimux/sandbox"
)

// Router serves the CRI.
type Router struct {
	runtime.UnimplementedRuntimeServiceServer
	runtime.UnimplementedImageServiceServer

	// set is the configuration with its drivers and handlers' runtimes,
	// replaced whole by Reconfigure (a reload).
	set atomic.Pointer[handlerSet]
	// defaultDriver stops and removes pods of a removed handler whose
	// record names no driver (records older than Metadata.Driver).
	defaultDriver string
	images        *image.Service
	cni           *cni.Manager
	stream        streaming.Server
	log           *slog.Logger

	sandboxes      *sandbox.Store[*sandbox.Sandbox]
	containers     *sandbox.Store[*sandbox.Container]
	sandboxNames   *sandbox.Registrar
	containerNames *sandbox.Registrar
	ckpt           *sandbox.Checkpoint
	events         events
	locks          *keyedLocks
	// pending are records recovery could not reconcile yet (their runtime
	// didn't answer); a background loop retries them.
	pending *pendingSet
}

var (
	_ runtime.RuntimeServiceServer = (*Router)(nil)
	_ runtime.ImageServiceServer   = (*Router)(nil)
	_ backends.Listener            = (*Router)(nil)
)

// Options are what the router is built from; cmd/crimux wires them.
type Options struct {
	Config  *conf.Config
	Drivers map[string]backends.Driver
	// DefaultDriver is the driver of records that name none.
	DefaultDriver string
	Images        *image.Service
	CNI           *cni.Manager
	Log           *slog.Logger
}

// New returns a router. Call SetStreaming and Recover before serving.
func New(o Options) (*Router, error) {
	ck, err := sandbox.NewCheckpoint(o.Config.RootDir)
	if err != nil {
		return nil, err
	}
	r := &Router{
		defaultDriver:  o.DefaultDriver,
		images:         o.Images,
		cni:            o.CNI,
		log:            o.Log,
		sandboxes:      sandbox.NewStore[*sandbox.Sandbox](),
		containers:     sandbox.NewGroupedStore(func(c *sandbox.Container) string { return c.SandboxID }),
		sandboxNames:   sandbox.NewRegistrar(),
		containerNames: sandbox.NewRegistrar(),
		ckpt:           ck,
		locks:          newKeyedLocks(),
		pending:        &pendingSet{ids: map[string]bool{}},
	}
	if err := r.Reconfigure(o.Config, o.Drivers); err != nil {
		return nil, err
	}
	return r, nil
}

// handlerSet is a configuration, its drivers and each configured handler's
// runtime: what a reload replaces at once.
type handlerSet struct {
	cfg      *conf.Config
	drivers  map[string]backends.Driver
	runtimes map[string]backends.Runtime
}

// Reconfigure makes cfg's handlers the ones served, each by its driver in
// drivers (a configuration reload; the drivers already took their new
// handlers). Pods keep their runtime: a removed handler's are still
// stopped and removed through their driver (runtimeOf).
func (r *Router) Reconfigure(cfg *conf.Config, drivers map[string]backends.Driver) error {
	hs := &handlerSet{cfg: cfg, drivers: drivers, runtimes: map[string]backends.Runtime{}}
	for name, h := range cfg.Handlers {
		d, ok := drivers[h.Driver]
		if !ok {
			return fmt.Errorf("handlers.%s.driver: driver %q is not running", name, h.Driver)
		}
		hs.runtimes[name] = d.Runtime(name)
	}
	r.set.Store(hs)
	return nil
}

// conf is the configuration in force.
func (r *Router) conf() *conf.Config { return r.set.Load().cfg }

// SetStreaming sets the streaming server Exec/Attach/PortForward URLs come from.
func (r *Router) SetStreaming(s streaming.Server) { r.stream = s }

// Register adds the CRI services to a gRPC server.
func (r *Router) Register(s *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(s, wire{r})
	runtime.RegisterImageServiceServer(s, r)
}

// resolveHandler maps a RunPodSandbox runtime_handler to its name and runtime.
func (r *Router) resolveHandler(h string) (string, backends.Runtime, error) {
	hs := r.set.Load()
	if h == "" {
		h = hs.cfg.DefaultHandler
	}
	rt, ok := hs.runtimes[h]
	if !ok {
		return "", nil, fmt.Errorf("%w: unknown runtime handler %q (configured: %s)", errInvalid, h, strings.Join(hs.cfg.HandlerNames(), ", "))
	}
	return h, rt, nil
}

// runtimeOf returns the runtime a sandbox was bound to, even when the handler
// is no longer configured (so its pods can still be stopped and removed).
func (r *Router) runtimeOf(sb *sandbox.Sandbox) backends.Runtime {
	hs := r.set.Load()
	// The handler's runtime, unless a reload gave the name to another driver.
	if rt, ok := hs.runtimes[sb.Handler]; ok && (sb.Driver == "" || hs.cfg.Handlers[sb.Handler].Driver == sb.Driver) {
		return rt
	}
	if d, ok := hs.drivers[sb.Driver]; ok {
		return d.Runtime(sb.Handler)
	}
	if d, ok := hs.drivers[r.defaultDriver]; ok {
		return d.Runtime(sb.Handler)
	}
	for _, d := range hs.drivers {
		return d.Runtime(sb.Handler)
	}
	return nil
}

// ownsNetwork: the pod's runtime runs its network (no netns, no CNI here).
func ownsNetwork(rt backends.Runtime) bool {
	n, ok := rt.(backends.NetworkOwner)
	return ok && n.OwnsNetwork()
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (r *Router) podsDir() string         { return filepath.Join(r.conf().StateDir, "pods") }
func (r *Router) podDir(id string) string { return filepath.Join(r.podsDir(), id) }

func (r *Router) netnsDir() string  { return filepath.Join(r.conf().StateDir, "netns") }
func (r *Router) usernsDir() string { return filepath.Join(r.conf().StateDir, "userns") }

func (r *Router) backendSandbox(sb *sandbox.Sandbox) backends.Sandbox {
	return backends.Sandbox{ID: sb.ID, Handler: sb.Handler, Config: sb.Config, NetNSPath: sb.NetNSPath, UsernsPath: sb.UsernsPath, Image: sb.Image, Dir: r.podDir(sb.ID)}
}

func (r *Router) saveSandbox(sb *sandbox.Sandbox) {
	if err := r.ckpt.SaveSandbox(sb); err != nil {
		r.log.Error("checkpoint sandbox", "id", sb.ID, "error", err)
	}
}

func (r *Router) saveContainer(c *sandbox.Container) {
	if err := r.ckpt.SaveContainer(c); err != nil {
		r.log.Error("checkpoint container", "id", c.ID, "error", err)
	}
}

// TaskExited implements backends.Listener.
func (r *Router) TaskExited(id string, st backends.TaskState) {
	if c, err := r.containers.Get(id); err == nil && c.ID == id {
		if c.Exited(st.ExitCode, st.ExitedAt, st.Reason) {
			r.saveContainer(c)
			r.emit(c, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
		}
		return
	}
	if sb, err := r.sandboxes.Get(id); err == nil && sb.ID == id {
		_ = sb.Update(func(s sandbox.Status) (sandbox.Status, error) {
			s.State = runtime.PodSandboxState_SANDBOX_NOTREADY
			s.Pid = 0
			return s, nil
		})
		r.saveSandbox(sb)
	}
}

// TaskOOM implements backends.Listener: the container's next (or last)
// exit is reported as OOMKilled.
func (r *Router) TaskOOM(id string) {
	c, err := r.containers.Get(id)
	if err != nil || c.ID != id {
		return
	}
	r.countOOM(c.SandboxID)
	_ = c.Update(func(s sandbox.ContainerStatus) (sandbox.ContainerStatus, error) {
		s.OOMKilled = true
		s.OOMEvents++
		if s.State == runtime.ContainerState_CONTAINER_EXITED {
			s.Reason = "OOMKilled"
		}
		return s, nil
	})
	r.saveContainer(c)
}

// Internal error kinds of the router itself; backends and stores have their own.
var (
	errInvalid = errors.New("invalid argument")
)

// toStatus maps an internal error to a gRPC status, once, at the boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, backends.ErrDeadline):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, backends.ErrNotFound), errors.Is(err, image.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, errInvalid), errors.Is(err, backends.ErrInvalid), errors.Is(err, backends.ErrUnsupported), errors.Is(err, image.ErrInvalid), errors.Is(err, sandbox.ErrAmbiguous):
		code = codes.InvalidArgument
	case errors.Is(err, sandbox.ErrNameTaken):
		code = codes.AlreadyExists
	case errors.Is(err, backends.ErrPrecondition):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

// quiet RPCs are polled by the kubelet; they are logged at debug level.
var quiet = map[string]bool{
	"/runtime.v1.RuntimeService/Version":             true,
	"/runtime.v1.RuntimeService/Status":              true,
	"/runtime.v1.RuntimeService/ListPodSandbox":      true,
	"/runtime.v1.RuntimeService/ListContainers":      true,
	"/runtime.v1.RuntimeService/PodSandboxStatus":    true,
	"/runtime.v1.RuntimeService/ContainerStatus":     true,
	"/runtime.v1.RuntimeService/ListContainerStats":  true,
	"/runtime.v1.RuntimeService/ListPodSandboxStats": true,
	"/runtime.v1.ImageService/ImageFsInfo":           true,
	"/runtime.v1.ImageService/ListImages":            true,
	"/runtime.v1.ImageService/ImageStatus":           true,
}

// Interceptor logs every call and maps its error to a gRPC code.
func (r *Router) Interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	// Before the call: a removed pod has no handler after it.
	rtHandler := r.requestHandler(req)
	resp, err := handler(ctx, req)
	err = toStatus(err)
	method := shortMethod(info.FullMethod)
	metrics.CRIRequests.WithLabelValues(method, rtHandler, status.Code(err).String()).Inc()
	metrics.CRIDuration.WithLabelValues(method, rtHandler).Observe(time.Since(start).Seconds())
	level := slog.LevelInfo
	if quiet[info.FullMethod] {
		level = slog.LevelDebug
	}
	if err != nil {
		level = slog.LevelWarn
		if quiet[info.FullMethod] && status.Code(err) == codes.NotFound {
			level = slog.LevelDebug
		}
	}
	r.log.Log(ctx, level, "cri call", "method", info.FullMethod, "duration", time.Since(start), "code", status.Code(err).String(), "error", errString(err))
	return resp, err
}

// StreamInterceptor maps errors of streaming RPCs.
func (r *Router) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := toStatus(handler(srv, ss))
	method := shortMethod(info.FullMethod)
	metrics.CRIRequests.WithLabelValues(method, "", status.Code(err).String()).Inc()
	metrics.CRIDuration.WithLabelValues(method, "").Observe(time.Since(start).Seconds())
	return err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// cleanup is a stack of undo steps run on failure with a fresh context.
type cleanup struct {
	fns []func(context.Context)
}

func (c *cleanup) add(f func(context.Context)) { c.fns = append(c.fns, f) }

// cleanupContext bounds undo steps, which must run even when the request's
// context is done.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// run undoes in reverse order.
func (c *cleanup) run() {
	ctx, cancel := cleanupContext()
	defer cancel()
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i](ctx)
	}
}

func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func writeFileAtomic(p string, data []byte, mode os.FileMode) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
