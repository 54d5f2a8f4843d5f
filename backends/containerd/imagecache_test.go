package containerd

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// remoteSnapshots stands for containerd's snapshot service: every Mounts
// call is a round trip, counted; this one has no mounts to give.
type remoteSnapshots struct {
	snapshots.Snapshotter
	calls *atomic.Int32
}

func (s remoteSnapshots) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	s.calls.Add(1)
	return nil, errors.New("asked containerd for the mounts of " + key)
}

type remoteClient struct{ calls *atomic.Int32 }

func (c remoteClient) SnapshotService(string) snapshots.Snapshotter {
	return remoteSnapshots{calls: c.calls}
}

// The user lookups of a container's spec (the image's /etc/passwd and
// /etc/group) read the rootfs its snapshot's Prepare just returned; they
// don't ask containerd for the same mounts again, once per lookup.
func TestSpecReadsUsersFromThePreparedRootfs(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	rootfsMounts := []mount.Mount{{Type: "bind", Source: rootfs(t), Options: []string{"rbind", "ro"}}}
	for _, tc := range []struct {
		desc string
		sc   *runtime.LinuxContainerSecurityContext
		want specs.User
	}{
		{"image's user", nil, specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{100, 1003}}},
		{"run as uid", &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 33}}, specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 100}}},
		{"run as user name", &runtime.LinuxContainerSecurityContext{RunAsUsername: "www-data"}, specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 100}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var calls atomic.Int32
			c := &containers.Container{ID: "c1", Snapshotter: "overlayfs", SnapshotKey: "c1"}
			s, err := generateSpec(ctx, remoteClient{&calls}, c, prepared(slices.Clone(rootfsMounts)), userOpts(tc.sc, "app"))
			if err != nil {
				t.Fatalf("generate spec: %v (containerd asked %d times)", err, calls.Load())
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("containerd was asked for the container's mounts %d times", n)
			}
			if got := s.Process.User; got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
				t.Errorf("user = %+v, want %+v", got, tc.want)
			}
		})
	}
	// Without a Prepare of its own (containerd made the snapshot),
	// containerd is asked, as before.
	var calls atomic.Int32
	c := &containers.Container{ID: "c1", Snapshotter: "overlayfs", SnapshotKey: "c1"}
	if _, err := generateSpec(ctx, remoteClient{&calls}, c, nil, userOpts(nil, "app")); err == nil || calls.Load() == 0 {
		t.Errorf("without prepared mounts: err %v after %d calls, want containerd asked", err, calls.Load())
	}
}

// prepared is a Prepare that is over and gave mounts.
func prepared(mounts []mount.Mount) *preparing {
	p := &preparing{done: make(chan struct{}), mounts: mounts}
	close(p.done)
	return p
}

// The rootfs snapshot is prepared while the spec is built and containerd
// records the container: a spec that reads nothing from the image's files
// (the pause container's) is built without waiting for it; one that looks
// users up waits, then reads the mounts Prepare gave.
func TestSpecWaitsForTheRootfsOnlyToReadIt(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "crimux-test")
	var calls atomic.Int32
	c := &containers.Container{ID: "c1", Snapshotter: "overlayfs", SnapshotKey: "c1"}
	pending := &preparing{done: make(chan struct{})}
	pause := sandboxSpecInput{Sandbox: testSandbox(nil), Image: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}, Hostname: "h", Node: nodeFacts{oomFloor: -1000, cgroupDriver: "cgroupfs"}}
	opts, err := sandboxSpec(pause)
	if err != nil {
		t.Fatal(err)
	}
	built := make(chan error, 1)
	go func() {
		_, err := generateSpec(ctx, remoteClient{&calls}, c, pending, opts)
		built <- err
	}()
	select {
	case err := <-built:
		if err != nil {
			t.Fatalf("pause spec: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the pause container's spec waited for its rootfs")
	}

	app := make(chan *oci.Spec, 1)
	go func() {
		s, err := generateSpec(ctx, remoteClient{&calls}, c, pending, userOpts(nil, "app"))
		if err != nil {
			t.Errorf("app spec: %v", err)
		}
		app <- s
	}()
	select {
	case <-app:
		t.Fatal("a spec that looks up its user was built before the rootfs was prepared")
	case <-time.After(100 * time.Millisecond):
	}
	pending.mounts = []mount.Mount{{Type: "bind", Source: rootfs(t), Options: []string{"rbind", "ro"}}}
	close(pending.done)
	if s := <-app; s != nil && (s.Process.User.UID != 1002 || s.Process.User.GID != 1003) {
		t.Errorf("user = %+v, want the image's app user 1002:1003", s.Process.User)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("containerd was asked for the container's mounts %d times", n)
	}

	// A Prepare that failed fails the spec that needs its mounts.
	failed := &preparing{done: make(chan struct{}), err: errors.New("prepare failed")}
	close(failed.done)
	if _, err := generateSpec(ctx, remoteClient{&calls}, c, failed, userOpts(nil, "app")); err == nil {
		t.Error("a spec was built from a rootfs whose Prepare failed")
	}
}
