// Command crimux is one Kubernetes CRI endpoint serving several runtime
// handlers (isolation levels) on a node.
//
//	crimux serve [flags]          serve the CRI on the configured socket
//	crimux config check [--config F]  print the effective config or its errors
//	crimux reload [--config F]    make the running crimux re-read its configuration (SIGHUP)
//	crimux version
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/crimux/crimux/backends/containerd"
	"github.com/crimux/crimux/backends/cri"
	"github.com/crimux/crimux/cni"
	"github.com/crimux/crimux/conf"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/instance"
	"github.com/crimux/crimux/internal/metrics"
	"github.com/crimux/crimux/router"
	"github.com/crimux/crimux/sandbox"
)

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  crimux serve [flags]             serve the CRI v1 API on the configured socket
  crimux config check [flags]      print the effective configuration, or its errors
  crimux reload [flags]            make the running crimux re-read its configuration
                                   (as SIGHUP does) and report the outcome
  crimux version                   print the version

flags (serve, config check, reload):`)
	fs := conf.Flags()
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func main() {
	if os.Getenv(sandbox.HolderEnv) != "" {
		sandbox.HoldNamespaces() // a pod user namespace's first process (sandbox.NewUserNS)
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "config":
		if len(os.Args) < 3 || os.Args[2] != "check" {
			usage(os.Stderr)
			os.Exit(2)
		}
		err = configCheck(os.Args[3:])
	case "reload":
		err = reloadCmd(os.Args[2:])
	case "version", "--version":
		fmt.Printf("crimux %s\n", router.Version())
	case "help", "-h", "--help":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "crimux: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crimux: %v\n", err)
		os.Exit(1)
	}
}

func load(args []string) (*conf.Config, error) {
	fs := conf.Flags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(os.Stdout)
			os.Exit(0)
		}
		return nil, err
	}
	return conf.Load(fs, os.Environ(), drivers()...)
}

// drivers are the backend drivers crimux has, as the configuration knows
// them; the first is the default driver of a handler that names none.
func drivers() []conf.Driver {
	return []conf.Driver{containerd.ConfDriver(), cri.ConfDriver()}
}

func configCheck(args []string) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	fmt.Print(c.TOML())
	if deferred := c.Deferred(drivers()...); len(deferred) > 0 {
		fmt.Println("\n# Not checked here; crimux checks these when it starts its drivers:")
		for _, d := range deferred {
			fmt.Printf("#   %s\n", d)
		}
	}
	return nil
}

// logger logs to stderr at level, which a reload may change.
func logger(level *slog.LevelVar) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

func serve(args []string) error {
	cfg, err := load(args)
	if err != nil {
		return err
	}
	level := &slog.LevelVar{}
	level.Set(parseLevel(cfg.LogLevel))
	log := logger(level)
	slog.SetDefault(log)
	for _, d := range []string{cfg.RootDir, cfg.StateDir, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %q: %w", d, err)
		}
	}
	// One crimux per root_dir, state_dir and socket: a second one must not
	// sweep, recover or unlink what the first serves.
	inst, err := instance.Acquire(cfg.RootDir, cfg.StateDir)
	if err != nil {
		return err
	}
	defer inst.Close()
	if err := instance.ProbeSocket(cfg.Socket); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The driver connects first; the router is built over it; then the
	// driver starts reporting exits and OOMs to the router, which recovers.
	drv, err := connect(ctx, cfg, inst.ID, log)
	if err != nil {
		return err
	}
	defer drv.Close()
	w := &wiring{args: args, cfg: cfg, instance: inst.ID, log: log, level: level, drv: drv}
	// The forwarding driver, when a handler uses it (or a reload adds one):
	// its handlers' images are their remotes'.
	if err := w.forwardTo(cfg); err != nil {
		return err
	}
	defer func() {
		if w.fwd != nil {
			w.fwd.Close()
		}
	}()
	for name := range handlersOf(cfg, cri.DriverName) {
		// A remote that is down is not a reason not to start (it makes
		// only its handler not ready), but the operator hears of it.
		if err := w.fwd.HandlerReady(ctx, name); err != nil {
			log.Warn("forwarded handler's remote not ready", "handler", name, "error", err)
		}
	}
	imgs := drv.Images()
	snapshotters, own := w.imageHandlers(cfg)
	w.images = image.New(imgs, imgs, cfg.SandboxImage, snapshotters, log)
	w.images.Reconfigure(snapshotters, own)
	netw := cni.New(cfg.CNI.BinDirs, cfg.CNI.ConfDir, filepath.Join(cfg.RootDir, "cni-cache"), cfg.CNI.Timeout)
	rt, err := router.New(router.Options{
		Config:        cfg,
		Drivers:       w.drivers(),
		DefaultDriver: drv.Name(),
		Images:        w.images,
		CNI:           netw,
		Log:           log,
	})
	if err != nil {
		return err
	}
	w.rt = rt
	drv.Start(rt)
	if w.fwd != nil {
		w.fwd.Start(rt)
	}
	if err := rt.Recover(ctx); err != nil {
		return err
	}
	// SIGHUP (crimux reload) re-reads the configuration.
	stopReloads := make(chan struct{})
	defer close(stopReloads)
	go w.handleReloads(stopReloads)

	hs, streamAddr, err := startStreaming(cfg, rt, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	if cfg.Debug.Address != "" {
		ds, err := startDebug(cfg.Debug.Address, log)
		if err != nil {
			return err
		}
		defer ds.Close()
	}
	if err := metrics.Register(rt.Collector()); err != nil {
		return err
	}
	if cfg.Metrics.Address != "" {
		ms, err := startHTTP("metrics.address", cfg.Metrics.Address, metricsMux(), log)
		if err != nil {
			return err
		}
		defer ms.Close()
	}

	return serveCRI(ctx, cfg, rt, streamAddr, log)
}

// streamWorkers is how many goroutines serve CRI calls, kept between calls:
// a call handed to one that is waiting runs on a stack already grown to
// what a call needs, where a goroutine started for each call grows its
// stack (copying it) on every one; measured ~20 µs less between reading a
// status call's header and its payload, of ~0.8 ms for the whole call.
// One per core, at least 4: the kubelet keeps a GetContainerEvents stream
// open on one, and its relist and stats calls come together. A call that
// finds every worker busy gets a goroutine of its own, as without workers.
func streamWorkers() uint32 {
	return uint32(max(4, runtime.GOMAXPROCS(0)))
}

// serveCRI serves the CRI on the socket until ctx ends (SIGINT, SIGTERM),
// then stops gracefully, for at most 10 s.
func serveCRI(ctx context.Context, cfg *conf.Config, rt *router.Router, streamAddr string, log *slog.Logger) error {
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on socket %q: %w", cfg.Socket, err)
	}
	if err := os.Chmod(cfg.Socket, 0o660); err != nil {
		return fmt.Errorf("chmod socket: %w", err)
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(rt.Interceptor),
		grpc.ChainStreamInterceptor(rt.StreamInterceptor),
		grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20),
		grpc.NumStreamWorkers(streamWorkers()),
	)
	rt.Register(gs)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	log.Info("crimux serving", "socket", cfg.Socket, "streaming", streamAddr, "containerd", cfg.Containerd.Address, "namespace", cfg.Containerd.Namespace, "handlers", cfg.HandlerNames(), "default_handler", cfg.DefaultHandler)
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			gs.Stop()
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	}
}

// startStreaming starts the Exec/Attach/PortForward server (over TLS when
// configured) and gives the router its URLs; it listens first so that the
// URLs carry the real port.
func startStreaming(cfg *conf.Config, rt *router.Router, log *slog.Logger) (*http.Server, string, error) {
	sln, err := net.Listen("tcp", cfg.Streaming.Address)
	if err != nil {
		return nil, "", fmt.Errorf("streaming.address %q: %w", cfg.Streaming.Address, err)
	}
	scfg := streaming.DefaultConfig
	scfg.Addr = sln.Addr().String()
	scheme := "http"
	var tlsCfg *tls.Config
	if cfg.Streaming.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Streaming.TLSCertFile, cfg.Streaming.TLSKeyFile)
		if err != nil {
			sln.Close()
			return nil, "", fmt.Errorf("streaming.tls_cert_file, streaming.tls_key_file: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	scfg.BaseURL = &url.URL{Scheme: scheme, Host: sln.Addr().String()}
	scfg.StreamIdleTimeout = cfg.Streaming.IdleTimeout
	ss, err := streaming.NewServer(scfg, rt.StreamRuntime())
	if err != nil {
		sln.Close()
		return nil, "", fmt.Errorf("streaming server: %w", err)
	}
	rt.SetStreaming(ss)
	hs := &http.Server{Handler: ss, ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsCfg}
	go func() {
		serve := func() error { return hs.Serve(sln) }
		if tlsCfg != nil {
			serve = func() error { return hs.ServeTLS(sln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("streaming server", "error", err)
		}
	}()
	return hs, sln.Addr().String(), nil
}

// startDebug serves net/http/pprof's profiles at addr.
func startDebug(addr string, log *slog.Logger) (*http.Server, error) {
	return startHTTP("debug.address", addr, pprofMux(), log)
}

// startHTTP serves h at addr (the configuration key is for errors and logs).
func startHTTP(key, addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", key, addr, err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = s.Serve(ln) }()
	log.Info("serving "+key, "address", ln.Addr().String())
	return s, nil
}

// metricsMux serves crimux's Prometheus metrics at /metrics.
func metricsMux() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("/metrics", metrics.Handler())
	return m
}

// pprofMux serves net/http/pprof's profiles under /debug/pprof/.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// connect waits for containerd (it may still be starting at boot) up to its timeout.
func connect(ctx context.Context, cfg *conf.Config, instanceID string, log *slog.Logger) (*containerd.Driver, error) {
	deadline := time.Now().Add(cfg.Containerd.Timeout + 20*time.Second)
	for {
		d, err := containerd.New(containerd.Options{
			Address:          cfg.Containerd.Address,
			Namespace:        cfg.Containerd.Namespace,
			Timeout:          cfg.Containerd.Timeout,
			StateDir:         cfg.StateDir,
			RegistryHostsDir: cfg.RegistryHostsDir,
			PauseBinary:      cfg.PauseBinary,
			Handlers:         handlersOf(cfg, containerd.DriverName),
			CgroupDriver:     cfg.CgroupDriver,
			Instance:         instanceID,
			Log:              log,
		})
		if errors.Is(err, containerd.ErrConfig) {
			return nil, err
		}
		if err == nil {
			if err = d.Ready(ctx); err == nil {
				return d, nil
			}
			d.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("containerd.address: %w", err)
		}
		log.Warn("waiting for containerd", "address", cfg.Containerd.Address, "error", err)
		time.Sleep(time.Second)
	}
}
