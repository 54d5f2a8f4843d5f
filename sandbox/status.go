// Package sandbox models pods and containers for crimux: immutable metadata,
// status changed only through Update, the stores, the name registrar, network
// namespaces and the on-disk checkpoint. It does not know which backend runs a pod.
package sandbox

import (
	"sync"
	"sync/atomic"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The sandbox state machine:
//
//	 RunPodSandbox
//	      │
//	      ▼
//	   (ready) ──StopPodSandbox / pause exits──► (notready) ──RemovePodSandbox──► gone
//	      │                                          ▲
//	      └────────── failure mid-way (rolled back) ─┘
//
// A sandbox only exists in the store once RunPodSandbox finished; a failed
// RunPodSandbox rolls back and leaves nothing.

// Metadata is what never changes after a sandbox was created.
type Metadata struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Handler string `json:"handler"`
	// Driver is the driver that ran the pod (its handler may be removed
	// from the configuration later); empty in records older than it.
	Driver    string                    `json:"driver,omitempty"`
	Config    *runtime.PodSandboxConfig `json:"-"`
	NetNSPath string                    `json:"netns_path,omitempty"`
	// UsernsPath is the pod's own user namespace (pinned); empty for the node's.
	UsernsPath string `json:"userns_path,omitempty"`
	CreatedAt  int64  `json:"created_at"`
	// Image is the sandbox (pause) image reference actually used.
	Image string `json:"image"`
}

// Status is what changes over a sandbox's life; only Sandbox.Update changes it.
type Status struct {
	State runtime.PodSandboxState `json:"state"`
	// IPs come from the CNI result, the first one primary.
	IPs []string `json:"ips,omitempty"`
	// NetworkReady is true between a successful CNI ADD and the CNI DEL.
	NetworkReady bool   `json:"network_ready"`
	Pid          uint32 `json:"pid,omitempty"`
	// PodResources and PodOverhead are the pod-level resources of the last
	// UpdatePodSandboxResources; until one comes, the config's are current.
	// They are replaced, never changed in place.
	PodResources *runtime.LinuxContainerResources `json:"pod_resources,omitempty"`
	PodOverhead  *runtime.LinuxContainerResources `json:"pod_overhead,omitempty"`
}

// Sandbox is one pod sandbox.
type Sandbox struct {
	Metadata

	mu     sync.Mutex // guards status
	status Status

	saveMu  sync.Mutex // guards removed; held while the record is written or deleted
	removed bool       // the record is deleted: it is never written again

	// EncodedItem is what the router keeps of the sandbox as a list item.
	EncodedItem
}

// EncodedItem keeps, with a record and for as long as it lives, the router's
// encoding of the parts of its list item that never change.
type EncodedItem struct{ p atomic.Pointer[[]byte] }

// Encoded returns what SetEncoded kept, or nil.
func (e *EncodedItem) Encoded() []byte {
	if p := e.p.Load(); p != nil {
		return *p
	}
	return nil
}

// SetEncoded keeps b.
func (e *EncodedItem) SetEncoded(b []byte) { e.p.Store(&b) }

// NewSandbox returns a sandbox with the given metadata and status.
func NewSandbox(md Metadata, st Status) *Sandbox {
	return &Sandbox{Metadata: md, status: st}
}

// Status returns a copy of the sandbox's status.
func (s *Sandbox) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.IPs = append([]string(nil), s.status.IPs...)
	return st
}

// Update changes the status through f; when f fails nothing changes.
func (s *Sandbox) Update(f func(Status) (Status, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := f(s.status)
	if err != nil {
		return err
	}
	s.status = st
	return nil
}

// The container state machine:
//
//	CreateContainer ──► CREATED ──StartContainer──► RUNNING ──exit/StopContainer──► EXITED
//	                       │                                                          │
//	                       └──────────── RemoveContainer ◄────────────────────────────┘
//
// UNKNOWN is reported when crimux restarted and the backend lost the container.

// ContainerMetadata is what never changes after a container was created.
type ContainerMetadata struct {
	ID        string                   `json:"id"`
	Name      string                   `json:"name"`
	SandboxID string                   `json:"sandbox_id"`
	Config    *runtime.ContainerConfig `json:"-"`
	// ImageRef is the image ID (sha256:...) the container was created from.
	ImageRef string `json:"image_ref"`
	// ImageName is the reference the user asked for.
	ImageName string `json:"image_name"`
	LogPath   string `json:"log_path,omitempty"`
	CreatedAt int64  `json:"created_at"`
	// User is the identity the container's process runs with.
	User *User `json:"user,omitempty"`
}

// User is the identity a container's process runs with, as its record keeps
// it. It is the record's own type, not the driver's, so that the JSON of
// records on disk doesn't change when the driver contract does.
type User struct {
	UID    int64   `json:"uid"`
	GID    int64   `json:"gid"`
	Groups []int64 `json:"groups,omitempty"`
}

// ContainerStatus is what changes over a container's life.
type ContainerStatus struct {
	State      runtime.ContainerState `json:"state"`
	Pid        uint32                 `json:"pid,omitempty"`
	StartedAt  int64                  `json:"started_at,omitempty"`
	FinishedAt int64                  `json:"finished_at,omitempty"`
	ExitCode   int32                  `json:"exit_code"`
	Reason     string                 `json:"reason,omitempty"`
	Message    string                 `json:"message,omitempty"`
	// OOMKilled is set when the kernel's OOM killer hit the container.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// OOMEvents counts the OOM kills seen in the container.
	OOMEvents uint64 `json:"oom_events,omitempty"`
	// Starting is set while StartContainer runs, so a second start is refused.
	Starting bool `json:"-"`
	// StartUnconfirmed marks a container recovery takes for RUNNING because
	// its record, written while its task started, says a start had begun
	// (CREATED with a start time) and its runtime has not answered yet.
	StartUnconfirmed bool `json:"-"`
}

// Container is one container of a sandbox.
type Container struct {
	ContainerMetadata

	mu     sync.Mutex // guards status
	status ContainerStatus

	saveMu  sync.Mutex // guards removed; held while the record is written or deleted
	removed bool       // the record is deleted: it is never written again

	// EncodedItem is what the router keeps of the container as a list item.
	EncodedItem
}

// NewContainer returns a container with the given metadata and status.
func NewContainer(md ContainerMetadata, st ContainerStatus) *Container {
	return &Container{ContainerMetadata: md, status: st}
}

// Status returns a copy of the container's status.
func (c *Container) Status() ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Update changes the status through f; when f fails nothing changes.
func (c *Container) Update(f func(ContainerStatus) (ContainerStatus, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := f(c.status)
	if err != nil {
		return err
	}
	c.status = st
	return nil
}

// Exited records an exit once; later exits (a duplicate event) change nothing.
// It reports whether the status changed.
func (c *Container) Exited(code int32, at time.Time, reason string) bool {
	changed := false
	_ = c.Update(func(st ContainerStatus) (ContainerStatus, error) {
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st, nil
		}
		changed = true
		st.State = runtime.ContainerState_CONTAINER_EXITED
		st.ExitCode = code
		st.FinishedAt = at.UnixNano()
		if st.StartedAt == 0 || st.StartedAt > st.FinishedAt {
			st.StartedAt = st.FinishedAt
		}
		st.Pid = 0
		if st.OOMKilled {
			reason = "OOMKilled"
		}
		if reason == "" {
			reason = "Completed"
			if code != 0 {
				reason = "Error"
			}
		}
		st.Reason = reason
		return st, nil
	})
	return changed
}
