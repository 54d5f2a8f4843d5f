package containerd

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/fault"
)

// On the hot path (every sandbox and container) crimux needs an image's
// config and its rootfs's chain ID, and to know it is unpacked. Asking
// containerd each time costs several content-store reads and a snapshot
// stat per call; what a manifest says never changes (it is addressed by its
// digest), so it is read once. Whether it is unpacked can change (a removed
// image's snapshots are collected): that is remembered too, and forgotten
// when a rootfs can't be prepared from it.

// imageInfo is what a manifest says that a container is made from.
type imageInfo struct {
	config  ocispec.Image
	chainID string
}

// imageCache holds imageInfo by manifest digest, and which manifests are
// known unpacked with which snapshotter.
type imageCache struct {
	mu       sync.Mutex
	info     map[digest.Digest]imageInfo
	unpacked map[unpackKey]bool
}

type unpackKey struct {
	manifest    digest.Digest
	snapshotter string
}

func newImageCache() *imageCache {
	return &imageCache{info: map[digest.Digest]imageInfo{}, unpacked: map[unpackKey]bool{}}
}

func (c *imageCache) get(dg digest.Digest) (imageInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.info[dg]
	return i, ok
}

func (c *imageCache) put(dg digest.Digest, i imageInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.info[dg] = i
}

func (c *imageCache) isUnpacked(k unpackKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unpacked[k]
}

func (c *imageCache) setUnpacked(k unpackKey, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v {
		c.unpacked[k] = true
	} else {
		delete(c.unpacked, k)
	}
}

// keepOnly drops what it knows of manifests no image names any more.
func (c *imageCache) keepOnly(live map[digest.Digest]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for dg := range c.info {
		if !live[dg] {
			delete(c.info, dg)
		}
	}
}

// forgetUnpacked drops every unpacked mark (an image was removed: its
// snapshots may go with it).
func (c *imageCache) forgetUnpacked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.unpacked)
}

// resolveImage finds an image by name (from the kept list of image
// records, or one call to containerd) and returns it with what its
// manifest says, unpacked with the handler's snapshotter. A missing image
// is image.ErrNotFound.
func (r *Runtime) resolveImage(ctx context.Context, name string) (client.Image, imageInfo, error) {
	var img client.Image
	var err error
	if rec, ok := r.d.images.record(name); ok {
		img = client.NewImage(r.d.client, rec)
	} else {
		img, err = r.d.client.GetImage(ctx, name)
	}
	if err != nil {
		if isNotFound(err) {
			return nil, imageInfo{}, fmt.Errorf("image %q: %w", name, image.ErrNotFound)
		}
		return nil, imageInfo{}, fmt.Errorf("image %q: %w", name, mapErr(err))
	}
	dg := img.Target().Digest
	info, ok := r.d.imageCache.get(dg)
	if !ok {
		ic, err := img.Spec(ctx)
		if err != nil {
			return nil, imageInfo{}, fmt.Errorf("image %q config: %w", name, mapErr(err))
		}
		diffIDs, err := img.RootFS(ctx)
		if err != nil {
			return nil, imageInfo{}, fmt.Errorf("image %q layers: %w", name, mapErr(err))
		}
		info = imageInfo{config: ic, chainID: identity.ChainID(diffIDs).String()}
		r.d.imageCache.put(dg, info)
	}
	if err := r.unpack(ctx, img, false); err != nil {
		return nil, imageInfo{}, err
	}
	return img, info, nil
}

// unpack makes sure img is unpacked with the handler's snapshotter; force
// checks again what the cache says.
func (r *Runtime) unpack(ctx context.Context, img client.Image, force bool) error {
	k := unpackKey{img.Target().Digest, r.opts.Snapshotter}
	if !force && r.d.imageCache.isUnpacked(k) {
		return nil
	}
	if err := r.ensureUnpacked(ctx, img); err != nil {
		r.d.imageCache.setUnpacked(k, false)
		return err
	}
	r.d.imageCache.setUnpacked(k, true)
	return nil
}

// newContainerFromImage creates a containerd container with a rootfs
// prepared from img (as client.WithNewSnapshot does, without reading the
// image's content again) and the spec specOpts build; it returns the
// container as made (made) and the spec.
// The rootfs snapshot is prepared while the spec is built and containerd
// records the container: the record only names the snapshot, and the spec
// waits for its mounts only if it reads the image's files (a user looked
// up by name). Options that remap IDs (a pod user namespace) take
// containerd's own path, which prepares the snapshot first.
// commit, when set, is called with the user the spec chose once the spec
// is made, while containerd records the container (backends.Container.Commit);
// its error is returned, after NewContainer's.
func (r *Runtime) newContainerFromImage(ctx context.Context, id string, img client.Image, info imageInfo, snapOpts []snapshots.Opt, specOpts []oci.SpecOpts, commit func(backends.User) error, opts ...client.NewContainerOpts) (*made, *oci.Spec, error) {
	var spec *oci.Spec
	m := &made{}
	// The lease is made ahead and deleted after this returns (leases.go),
	// once the snapshot's Prepare is over.
	lctx, release, err := r.d.leases.with(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	var rootfs *preparing
	if len(snapOpts) == 0 {
		rootfs = r.prepareRootfs(lctx, id, img, info)
	}
	all := append([]client.NewContainerOpts{r.withRootfs(id, img, snapOpts), withSpecOf(&spec, specOpts, rootfs)}, opts...)
	var committed chan error
	if commit != nil {
		// Last: the options before it may still fail.
		all = append(all, func(context.Context, *client.Client, *containers.Container) error {
			committed = make(chan error, 1)
			u := userOf(spec.Process.User)
			go func() { committed <- commit(u) }()
			if fault.Armed("create-container/before-containerd") {
				// The record written, containerd's not yet.
				err := <-committed
				committed <- err
				if err == nil {
					fault.Point("create-container/before-containerd")
				}
			}
			return nil
		})
	}
	cont, err := r.d.client.NewContainer(lctx, id, all...)
	if committed != nil {
		if cerr := <-committed; err == nil && cerr != nil {
			err = cerr // the caller removes the container
		}
	}
	if rootfs != nil {
		mounts, perr := rootfs.wait()
		if perr != nil && err == nil {
			// containerd recorded a container whose rootfs is not there.
			cctx, cancel := r.d.cleanupCtx()
			defer cancel()
			if derr := r.d.client.ContainerService().Delete(cctx, id); derr != nil && !isNotFound(derr) {
				r.d.log.Warn("roll back container", "id", id, "error", derr)
			}
			err = perr
		}
		m.rootfs = mounts
	}
	if err != nil {
		return nil, nil, err
	}
	m.cont = cont
	if m.rootfs != nil && spec.Linux != nil && spec.Linux.MountLabel != "" {
		// As client's Container.NewTask labels them.
		for i := range m.rootfs {
			m.rootfs[i].Options = append(m.rootfs[i].Options, fmt.Sprintf("context=%q", spec.Linux.MountLabel))
		}
	}
	return m, spec, nil
}

// preparing is a rootfs snapshot's Prepare under way.
type preparing struct {
	done   chan struct{}
	mounts []mount.Mount
	err    error
}

// wait returns the mounts Prepare gave, once it is over.
func (p *preparing) wait() ([]mount.Mount, error) {
	<-p.done
	return p.mounts, p.err
}

// prepareRootfs starts preparing container id's rootfs snapshot (keyed by
// its ID) on the image's chain, in the handler's snapshotter.
func (r *Runtime) prepareRootfs(ctx context.Context, id string, img client.Image, info imageInfo) *preparing {
	p := &preparing{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sn := r.d.client.SnapshotService(r.opts.Snapshotter)
		mounts, err := sn.Prepare(ctx, id, info.chainID)
		if isNotFound(err) {
			// The image's snapshots were collected since it was unpacked.
			if uerr := r.unpack(ctx, img, true); uerr != nil {
				p.err = uerr
				return
			}
			mounts, err = sn.Prepare(ctx, id, info.chainID)
		}
		p.mounts, p.err = mounts, err
	}()
	return p
}

// withRootfs names the container's rootfs snapshot, which prepareRootfs
// makes, or with snapOpts has containerd's client prepare it first.
func (r *Runtime) withRootfs(id string, img client.Image, snapOpts []snapshots.Opt) client.NewContainerOpts {
	return func(ctx context.Context, cl *client.Client, c *containers.Container) error {
		c.Snapshotter = r.opts.Snapshotter
		if len(snapOpts) > 0 {
			return client.WithNewSnapshot(id, img, snapOpts...)(ctx, cl, c)
		}
		c.SnapshotKey, c.Image = id, img.Name()
		return nil
	}
}

// withSpecOf builds the container's spec, as client.WithNewSpec does, and
// keeps it in *out so that nothing has to read it back from containerd.
// rootfs is the Prepare of the container's snapshot under way (nil when
// containerd's own path made it).
func withSpecOf(out **oci.Spec, specOpts []oci.SpecOpts, rootfs *preparing) client.NewContainerOpts {
	return func(ctx context.Context, cl *client.Client, c *containers.Container) error {
		s, err := generateSpec(ctx, cl, c, rootfs, specOpts)
		if err != nil {
			return err
		}
		*out = s
		return client.WithSpec(s)(ctx, cl, c)
	}
}

// generateSpec applies specOpts to the default spec for container c. The
// options that look users and groups up in the image (oci.WithUserID,
// WithUsername, WithUser, WithAdditionalGIDs) read the container's rootfs
// through the mounts of its snapshot, which each asks containerd for: one
// round trip per lookup, up to two per container. When crimux prepares the
// snapshot itself (rootfs), they wait for its Prepare and read the mounts
// it gave; a spec with no lookup (the pause container's) doesn't wait.
func generateSpec(ctx context.Context, cl oci.Client, c *containers.Container, rootfs *preparing, specOpts []oci.SpecOpts) (*oci.Spec, error) {
	if rootfs != nil && c.SnapshotKey != "" {
		cl = preparedRootfs{Client: cl, snapshotter: c.Snapshotter, key: c.SnapshotKey, rootfs: rootfs}
	}
	return oci.GenerateSpec(ctx, cl, c, specOpts...)
}

// preparedRootfs is an oci.Client whose snapshot service knows the mounts
// of one snapshot, the container's, and asks containerd for the others.
type preparedRootfs struct {
	oci.Client
	snapshotter, key string
	rootfs           *preparing
}

func (p preparedRootfs) SnapshotService(name string) snapshots.Snapshotter {
	sn := p.Client.SnapshotService(name)
	if name != p.snapshotter {
		return sn
	}
	return preparedMounts{Snapshotter: sn, key: p.key, rootfs: p.rootfs}
}

// MountManager is the client's, when it has one: the user lookups mount
// with it when they can't read the mounts directly.
func (p preparedRootfs) MountManager() mount.Manager {
	if m, ok := p.Client.(interface{ MountManager() mount.Manager }); ok {
		return m.MountManager()
	}
	return nil
}

type preparedMounts struct {
	snapshots.Snapshotter
	key    string
	rootfs *preparing
}

// Mounts of the container's snapshot wait for its Prepare.
func (p preparedMounts) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	if key == p.key {
		select {
		case <-p.rootfs.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		mounts, err := p.rootfs.wait()
		return slices.Clone(mounts), err
	}
	return p.Snapshotter.Mounts(ctx, key)
}
