package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/image"
)

// Images is the driver's image store: one store in crimux's namespace that
// every handler shares.
type Images struct {
	d *Driver

	mu    sync.Mutex // guards pulls and known
	pulls map[string]*refLock
	// known caches what an image's manifest says (config digest, size,
	// user) by manifest digest: content-addressed, so it never goes stale,
	// and status calls needn't read every image's blobs again.
	known map[digest.Digest]entryInfo
	// records is the list of image records, kept while events say it is
	// current (imagerecords.go).
	records imageRecords
}

type entryInfo struct {
	id   string
	size int64
	user string
}

var _ image.Store = (*Images)(nil)
var _ image.Builtin = (*Images)(nil)

// Images returns the driver's image store (one per driver, so pulls and
// removals of one name serialise across all its users).
func (d *Driver) Images() *Images { return d.images }

// refLock is one reference's pull lock; refs counts holders and waiters
// (guarded by Images.mu), so the map only holds references in use.
type refLock struct {
	mu   sync.Mutex
	refs int
}

// lockRef serialises pulls of one reference; pulls of different images run in parallel.
func (s *Images) lockRef(ref string) func() {
	s.mu.Lock()
	m, ok := s.pulls[ref]
	if !ok {
		m = &refLock{}
		s.pulls[ref] = m
	}
	m.refs++
	s.mu.Unlock()
	m.mu.Lock()
	return func() {
		m.mu.Unlock()
		s.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(s.pulls, ref)
		}
		s.mu.Unlock()
	}
}

// pullLocks is how many references have a pull lock (tests: none leak).
func (s *Images) pullLocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pulls)
}

func (s *Images) resolver(ctx context.Context, auth *image.Auth) docker.ResolverOptions {
	creds := func(host string) (string, string, error) {
		if auth == nil {
			return "", "", nil
		}
		if auth.IdentityToken != "" {
			return "", auth.IdentityToken, nil
		}
		return auth.Username, auth.Password, nil
	}
	return docker.ResolverOptions{Hosts: config.ConfigureHosts(ctx, config.HostOptions{
		HostDir:     config.HostDirFromRoot(s.d.opts.RegistryHostsDir),
		Credentials: creds,
	})}
}

// Pull implements image.Store.
func (s *Images) Pull(ctx context.Context, ref string, auth *image.Auth, snapshotter string) (image.Image, error) {
	ctx = s.d.ctx(ctx)
	defer s.lockRef(ref)()
	defer s.records.changed()
	ctx, done, err := s.d.withLease(ctx, "pull")
	if err != nil {
		return image.Image{}, err
	}
	defer done()
	img, err := s.d.client.Pull(ctx, ref,
		client.WithResolver(docker.NewResolver(s.resolver(ctx, auth))),
		client.WithPullUnpack,
		client.WithPullSnapshotter(snapshotter),
	)
	if err != nil {
		return image.Image{}, fmt.Errorf("pull image %q: %w", ref, mapErr(err))
	}
	// Also record the image under its repo digest, as the kubelet expects.
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		if _, isDigest := named.(reference.Digested); !isDigest {
			if dref, err := reference.WithDigest(reference.TrimNamed(named), img.Target().Digest); err == nil {
				if err := s.putName(ctx, dref.String(), img.Target()); err != nil {
					return image.Image{}, err
				}
			}
		}
	}
	// The pulled image itself, not a fresh lookup: a concurrent RemoveImage
	// of the same image must not turn a finished pull into NotFound.
	cfg, err := img.Config(ctx)
	if err != nil {
		return image.Image{}, fmt.Errorf("pull image %q: config: %w", ref, mapErr(err))
	}
	return image.Image{ID: cfg.Digest.String(), RepoTags: []string{ref}}, nil
}

func (s *Images) putName(ctx context.Context, name string, target ocispec.Descriptor) error {
	is := s.d.client.ImageService()
	rec := images.Image{Name: name, Target: target}
	if _, err := is.Create(ctx, rec); err != nil {
		if !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("record image name %q: %w", name, err)
		}
		if _, err := is.Update(ctx, rec, "target"); err != nil {
			return fmt.Errorf("update image name %q: %w", name, err)
		}
	}
	return nil
}

// entry is one image record with what its config says.
type entry struct {
	name   string
	target ocispec.Descriptor
	id     string
	size   int64
	user   string
	annots map[string]string
}

// entries are the image records in crimux's namespace with what their
// manifests say; the slice is shared and must not be changed.
func (s *Images) entries(ctx context.Context) ([]entry, error) {
	es, gen, ok := s.records.cached()
	if ok {
		return es, nil
	}
	ctx = s.d.ctx(ctx)
	recs, err := s.d.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]entry, 0, len(recs))
	live := map[digest.Digest]bool{}
	for _, r := range recs {
		info, ok := s.info(ctx, r)
		if !ok {
			continue // content missing: not a usable image
		}
		live[r.Target.Digest] = true
		out = append(out, entry{name: r.Name, target: r.Target, id: info.id, size: info.size, user: info.user, annots: r.Target.Annotations})
	}
	s.mu.Lock()
	for dg := range s.known {
		if !live[dg] {
			delete(s.known, dg)
		}
	}
	s.mu.Unlock()
	s.d.imageCache.keepOnly(live)
	s.records.store(out, gen)
	return out, nil
}

// record finds the image record of name, from the kept list when it is
// current; ok is false when it isn't kept or not there.
func (s *Images) record(name string) (images.Image, bool) {
	es, _, ok := s.records.cached()
	if !ok {
		return images.Image{}, false
	}
	for _, e := range es {
		if e.name == name {
			return images.Image{Name: e.name, Target: e.target}, true
		}
	}
	return images.Image{}, false
}

// info reads (once per manifest) what an image record's content says.
func (s *Images) info(ctx context.Context, r images.Image) (entryInfo, bool) {
	s.mu.Lock()
	info, ok := s.known[r.Target.Digest]
	s.mu.Unlock()
	if ok {
		return info, true
	}
	cs := s.d.client.ContentStore()
	cfg, err := images.Config(ctx, cs, r.Target, platforms.Default())
	if err != nil {
		return entryInfo{}, false
	}
	info.id = cfg.Digest.String()
	if b, err := content.ReadBlob(ctx, cs, cfg); err == nil {
		var ic ocispec.Image
		if json.Unmarshal(b, &ic) == nil {
			info.user = ic.Config.User
		}
	}
	size, err := r.Size(ctx, cs, platforms.Default())
	if err != nil {
		return info, true // layers still arriving: report it, don't cache a size
	}
	info.size = size
	s.mu.Lock()
	s.known[r.Target.Digest] = info
	s.mu.Unlock()
	return info, true
}

func group(es []entry) []image.Image {
	byID := map[string]*image.Image{}
	var order []string
	for _, e := range es {
		img, ok := byID[e.id]
		if !ok {
			img = &image.Image{ID: e.id, Size: uint64(e.size), User: e.user, Annotations: e.annots}
			byID[e.id] = img
			order = append(order, e.id)
		}
		switch {
		case strings.HasPrefix(e.name, "sha256:"):
		case strings.Contains(e.name, "@"):
			img.RepoDigests = append(img.RepoDigests, e.name)
		default:
			img.RepoTags = append(img.RepoTags, e.name)
		}
	}
	sort.Strings(order)
	out := make([]image.Image, 0, len(order))
	for _, id := range order {
		img := byID[id]
		sort.Strings(img.RepoTags)
		sort.Strings(img.RepoDigests)
		out = append(out, *img)
	}
	return out
}

// List implements image.Store.
func (s *Images) List(ctx context.Context) ([]image.Image, error) {
	es, err := s.entries(ctx)
	if err != nil {
		return nil, err
	}
	return group(es), nil
}

// Get implements image.Store: ref is a normalized name or an ID.
func (s *Images) Get(ctx context.Context, ref string) (image.Image, error) {
	es, err := s.entries(ctx)
	if err != nil {
		return image.Image{}, err
	}
	id := ""
	for _, e := range es {
		if e.name == ref || e.id == ref {
			id = e.id
			break
		}
	}
	if id == "" {
		return image.Image{}, fmt.Errorf("%w: %q", image.ErrNotFound, ref)
	}
	for _, img := range group(es) {
		if img.ID == id {
			return img, nil
		}
	}
	return image.Image{}, fmt.Errorf("%w: %q", image.ErrNotFound, ref)
}

// Remove implements image.Store.
func (s *Images) Remove(ctx context.Context, id string) error {
	ctx = s.d.ctx(ctx)
	defer s.records.changed()
	es, err := s.entries(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range es {
		if e.id == id {
			names = append(names, e.name)
		}
	}
	is := s.d.client.ImageService()
	sort.Strings(names)
	for i, n := range names {
		// A pull of the same name finishes first: its caller gets the image
		// it pulled before this removal (and its GC) can take the content.
		unlock := s.lockRef(n)
		var opts []images.DeleteOpt
		if i == len(names)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		err := is.Delete(ctx, n, opts...)
		unlock()
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("remove image %q: %w", n, err)
		}
	}
	// Its snapshots may be collected now; unpacked marks are checked again.
	s.d.imageCache.forgetUnpacked()
	return nil
}

// FsInfo implements image.Store: the snapshotters' root and what snapshots use.
func (s *Images) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	ctx = s.d.ctx(ctx)
	var out []*runtime.FilesystemUsage
	now := time.Now().UnixNano()
	for _, snapshotter := range s.d.snapshotters() {
		ps, err := s.d.client.IntrospectionService().Plugins(ctx, fmt.Sprintf(`type==io.containerd.snapshotter.v1,id==%s`, snapshotter))
		if err != nil || len(ps.Plugins) == 0 {
			return nil, fmt.Errorf("snapshotter %q: not found in containerd", snapshotter)
		}
		root := ps.Plugins[0].Exports["root"]
		var used, inodes int64
		sn := s.d.client.SnapshotService(snapshotter)
		_ = sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
			if u, err := sn.Usage(ctx, info.Name); err == nil {
				used += u.Size
				inodes += u.Inodes
			}
			return nil
		})
		out = append(out, &runtime.FilesystemUsage{
			Timestamp:  now,
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: root},
			UsedBytes:  &runtime.UInt64Value{Value: uint64(used)},
			InodesUsed: &runtime.UInt64Value{Value: uint64(inodes)},
		})
	}
	return out, nil
}

// pauseBinary finds the static pause program.
func (s *Images) pauseBinary() (string, error) {
	if p := s.d.opts.PauseBinary; p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(exe), "crimux-pause")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pause_binary not set and %q not found: %w", p, err)
	}
	return p, nil
}

// ImportPause implements image.Builtin: it writes a one-layer image holding
// crimux's own pause program straight into containerd's content store.
func (s *Images) ImportPause(ctx context.Context) (string, error) {
	ctx = s.d.ctx(ctx)
	defer s.lockRef(builtinPauseRf)()
	defer s.records.changed()
	// A lease keeps containerd's garbage collector off the blobs until the
	// image record references them.
	ctx, done, err := s.d.withLease(ctx, "import")
	if err != nil {
		return "", err
	}
	defer done()
	bin, err := s.pauseBinary()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read pause binary: %w", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer.Bytes()), Size: int64(layer.Len())}
	plat := platforms.DefaultSpec()
	cfg, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: plat.OS, Architecture: plat.Architecture},
		Config:   ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	man, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	manDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}
	cs := s.d.client.ContentStore()
	for _, b := range []struct {
		desc   ocispec.Descriptor
		data   []byte
		labels map[string]string
	}{
		{layerDesc, layer.Bytes(), nil},
		{cfgDesc, cfg, nil},
		{manDesc, man, map[string]string{
			"containerd.io/gc.ref.content.config": cfgDesc.Digest.String(),
			"containerd.io/gc.ref.content.l.0":    layerDesc.Digest.String(),
		}},
	} {
		if err := content.WriteBlob(ctx, cs, b.desc.Digest.String(), bytes.NewReader(b.data), b.desc, content.WithLabels(b.labels)); err != nil {
			return "", fmt.Errorf("write built-in pause image: %w", err)
		}
	}
	if err := s.putName(ctx, builtinPauseRf, manDesc); err != nil {
		return "", err
	}
	for _, snapshotter := range s.d.snapshotters() {
		img, err := s.d.client.GetImage(ctx, builtinPauseRf)
		if err != nil {
			return "", err
		}
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return "", fmt.Errorf("unpack built-in pause image with %q: %w", snapshotter, err)
		}
	}
	return builtinPauseRf, nil
}
