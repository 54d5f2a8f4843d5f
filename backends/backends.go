// Package backends defines what the router needs from something that runs pods:
// a Driver (one per configured driver, owning its connection) and a Runtime
// (one per handler). Optional abilities are separate interfaces discovered by
// type assertion. Drivers are wired in cmd/crimux, never registered globally.
package backends

import (
	"context"
	"errors"
	"io"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Errors a backend returns, wrapped with %w; the router maps them to gRPC codes.
var (
	// ErrNotFound: the backend has no such sandbox, container or process.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request can't be served as asked.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnsupported: this handler can't do that, by design (an InvalidArgument for the client).
	ErrUnsupported = errors.New("not supported by this handler")
	// ErrPrecondition: the object is in a state that doesn't allow the call.
	ErrPrecondition = errors.New("failed precondition")
	// ErrDeadline: an operation ran out of its time (an ExecSync timeout).
	ErrDeadline = errors.New("deadline exceeded")
	// ErrDefault: an optional ability the runtime has no way of its own
	// for, this time; the caller does what it does without the ability.
	ErrDefault = errors.New("no way of its own; do the default")
)

// Sandbox is what a runtime needs to start a pod sandbox.
type Sandbox struct {
	ID      string
	Handler string
	Config  *runtime.PodSandboxConfig
	// NetNSPath is the pod's network namespace; empty for host network.
	NetNSPath string
	// UsernsPath is the pod's own user namespace, which owns NetNSPath; empty
	// for the node's. Every container of the pod, pause included, joins it.
	UsernsPath string
	// Image is the sandbox (pause) image reference, present in the image store.
	Image string
	// Dir is a directory of the sandbox's own for resolv.conf, hostname, hosts.
	Dir string
	// WaitNetwork, when not nil, waits until the pod's network is set up
	// (CNI ADD done) and returns its error. RunSandbox runs while CNI
	// configures NetNSPath, so that the two overlap: a runtime that reads
	// the netns's interfaces when it creates the sandbox (gVisor's netstack
	// copies them) calls it first; one that only joins the netns (runc)
	// needn't. The router waits for the network either way.
	WaitNetwork func(ctx context.Context) error
}

// Container is what a runtime needs to create a container.
type Container struct {
	ID      string
	Sandbox Sandbox
	Config  *runtime.ContainerConfig
	// Image is the image reference (name) in the image store; ImageID its ID.
	Image   string
	ImageID string
	// LogDir is the pod's log directory (absolute) and LogPath the
	// container's log file relative to it (the router checked that its text
	// stays inside); LogPath is empty for no log. The file is opened beneath
	// LogDir without following any symlink there.
	LogDir  string
	LogPath string
	// Commit, when set, records the container. CreateContainer may call it
	// once, with the user, as soon as the spec is made, and go on creating
	// the container while it runs (the record's write then overlaps the
	// runtime's own); it returns only after Commit returned, and fails with
	// Commit's error, leaving the caller to remove what it made. A runtime
	// that does not call it leaves the caller to record after it returned.
	Commit func(User) error
}

// User is the identity a container's process runs with.
type User struct {
	UID    int64
	GID    int64
	Groups []int64
}

// TaskState is what a runtime knows of a sandbox's or container's process.
type TaskState struct {
	State    runtime.ContainerState
	Pid      uint32
	ExitCode int32
	ExitedAt time.Time
	Reason   string
	// NeverStarted, with State CREATED, says the runtime knows the process
	// was never started (a created task waits for its start); without it a
	// CREATED container may as well have run and lost its process (a
	// reboot), which crimux can't tell from never started.
	NeverStarted bool
	// IPs are the pod's addresses, from RunSandbox of a runtime that owns
	// its pods' network (NetworkOwner); nil otherwise.
	IPs []string
}

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int32
}

// Streams are the stdio of an exec or attach session.
type Streams struct {
	Stdin  io.Reader
	Stdout io.WriteCloser
	Stderr io.WriteCloser
	TTY    bool
	Resize <-chan remotecommand.TerminalSize
}

// Listener hears about processes that ended on their own (or were killed).
type Listener interface {
	// TaskExited is called once per exit of a sandbox's or container's main process.
	TaskExited(id string, st TaskState)
	// TaskOOM is called when the kernel's OOM killer hit a process of id.
	TaskOOM(id string)
}

// Driver owns a connection to something that runs pods and hands out one Runtime per handler.
type Driver interface {
	// Name is the driver's name as the configuration spells it.
	Name() string
	// Runtime returns the runtime for a handler. For a handler no longer
	// configured it returns a runtime that can still stop and remove the
	// pods that handler made.
	Runtime(handler string) Runtime
	// Ready returns nil when the driver can serve, else why not.
	Ready(ctx context.Context) error
	// Version names what the driver runs on (e.g. "containerd v2.4.2").
	Version(ctx context.Context) (string, error)
	Close() error
}

// Runtime runs the sandboxes and containers of one handler.
type Runtime interface {
	Handler() string
	// RunSandbox starts the sandbox's pause process in its namespaces
	// (see Sandbox.WaitNetwork: the network may still be being set up).
	RunSandbox(ctx context.Context, sb Sandbox) (TaskState, error)
	// StopSandbox kills the pause process. A missing sandbox is not an error.
	StopSandbox(ctx context.Context, id string) error
	// RemoveSandbox deletes everything the runtime holds for the sandbox. Missing is fine.
	RemoveSandbox(ctx context.Context, id string) error
	// CreateContainer creates the container and returns the identity its
	// process will run with (uid, gid, supplementary groups), resolved from the
	// image's /etc/passwd and /etc/group where the config names no numbers.
	CreateContainer(ctx context.Context, c Container) (User, error)
	StartContainer(ctx context.Context, id string) (TaskState, error)
	// StopContainer signals the container and returns once it exited, killing
	// it after timeout. A missing or stopped container is not an error.
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	// RemoveContainer deletes the container. Missing is fine.
	RemoveContainer(ctx context.Context, id string) error
	// State asks the runtime about a process: used on recovery after a restart.
	State(ctx context.Context, id string) (TaskState, error)
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error)
	Exec(ctx context.Context, id string, cmd []string, s Streams) error
	Attach(ctx context.Context, id string, s Streams) error
	ReopenLog(ctx context.Context, id string) error
	UpdateResources(ctx context.Context, id string, r *runtime.LinuxContainerResources) error
	// Stats reports a container's resource use.
	Stats(ctx context.Context, id string) (*runtime.ContainerStats, error)
	// Features reports what this handler supports.
	Features() *runtime.RuntimeHandlerFeatures
}

// NetworkOwner is an optional ability of a Runtime whose pods' network is
// its own (a remote CRI runtime runs its own CNI): the router makes no netns
// and runs no CNI for them, gives RunSandbox no NetNSPath and no sandbox
// image, and records the IPs RunSandbox returns.
type NetworkOwner interface {
	OwnsNetwork() bool
}

// PodStatser is an optional ability of a Runtime that measures its pods as
// a whole (a remote runtime: their cgroups and network are its own). Its
// container stats carry the router's container IDs.
type PodStatser interface {
	PodStats(ctx context.Context, sandboxID string) (*runtime.PodSandboxStats, error)
}

// NetNSReporter is an optional ability of a NetworkOwner: where a pod's
// network namespace is on this node ("" when it can't tell), so that the
// router reads its traffic counters as it does for its own pods.
type NetNSReporter interface {
	PodNetNS(ctx context.Context, sandboxID string) (string, error)
}

// RemoteStreamer is an optional ability of a Runtime whose Exec, Attach and
// PortForward are served by someone else's streaming server: the router
// returns the URL it gives instead of one of its own.
type RemoteStreamer interface {
	ExecURL(ctx context.Context, req *runtime.ExecRequest) (string, error)
	AttachURL(ctx context.Context, req *runtime.AttachRequest) (string, error)
	PortForwardURL(ctx context.Context, req *runtime.PortForwardRequest) (string, error)
}

// HandlerReadiness is an optional ability of a Driver whose outage touches
// only its own handlers (a remote runtime): the router leaves it out of
// RuntimeReady and reports each of its handlers in a condition of its own.
type HandlerReadiness interface {
	HandlerReady(ctx context.Context, handler string) error
}

// PortForwarder is an optional ability: a runtime that must forward ports its
// own way (a sandbox whose network stack is not the host kernel's). Without
// it, or when it returns ErrDefault, the router dials the port inside the
// pod's network namespace.
type PortForwarder interface {
	PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error
}

// SandboxResizer is an optional ability: a runtime whose sandbox itself
// carries the pod's resources (a gVisor sandbox's cgroup) applies new ones at
// UpdatePodSandboxResources. Without it the pod cgroup, which the kubelet
// resized already, is all there is.
type SandboxResizer interface {
	UpdateSandboxResources(ctx context.Context, sandboxID string, pod *runtime.LinuxPodSandboxConfig) error
}

// Sweeper is an optional ability of a Driver: at start, removing what it
// holds for pods and containers crimux has no record of (what a crash between
// creating them and saving their record leaves). It returns the removed IDs.
type Sweeper interface {
	Sweep(ctx context.Context, known func(id string) bool) ([]string, error)
}

// Recoverer is an optional ability: re-attaching to processes that kept running
// while crimux was down (logs, exit watching).
type Recoverer interface {
	// Recover re-attaches to what still runs and reports what the runtime
	// knows of each sandbox and container asked about: RUNNING (with its
	// pid), CREATED (never ran), or EXITED (with its code and time). An ID
	// it can't report is in failed: ErrNotFound when the runtime has no
	// such object, any other error when it could not tell (unreachable),
	// and the caller asks again later.
	Recover(ctx context.Context, sandboxes []Sandbox, containers []Container) (states map[string]TaskState, failed map[string]error)
}

// Usage is a container's raw resource counters, for the CRI metrics calls.
// Fields a backend can't measure stay zero.
type Usage struct {
	CPUUsageNs, CPUUserNs, CPUSystemNs        uint64
	CFSPeriods, CFSThrottledPeriods           uint64
	CFSThrottledNs                            uint64
	MemCache, MemRSS, MemMappedFile, MemSwap  uint64
	MemUsage, MemMaxUsage, MemFailcnt         uint64
	MemKernel, MemWorkingSet                  uint64
	PgFault, PgMajFault                       uint64
	Processes, ThreadsMax                     uint64
	Threads, FileDescriptors, Sockets         uint64
	FsUsageBytes, FsInodesUsed                uint64
	FsInodesFree, FsInodesTotal, FsLimitBytes uint64
}

// Metrics is an optional ability: raw counters for ListPodSandboxMetrics.
type Metrics interface {
	Usage(ctx context.Context, id string) (Usage, error)
}
