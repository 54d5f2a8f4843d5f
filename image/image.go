// Package image is crimux's one image service: CRI ImageService semantics
// (pull, list, status, remove, fs info, the pinned sandbox image) over a small
// Store interface that a driver implements. Every handler shares it; a
// handler only changes which snapshotter unpacks an image.
package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/internal/metrics"
)

// ErrNotFound is returned for an image the store does not have.
var ErrNotFound = errors.New("image not found")

// ErrInvalid is returned for a malformed image reference.
var ErrInvalid = errors.New("invalid image reference")

// Image is one image (one config digest) with every name it has.
type Image struct {
	// ID is the config digest, sha256:...
	ID          string
	RepoTags    []string
	RepoDigests []string
	Size        uint64
	// User is the image config's user, as written there.
	User        string
	Annotations map[string]string
}

// Auth is the credential a pull request carries.
type Auth struct {
	Username      string
	Password      string
	IdentityToken string
}

// Store is what the image service needs from a driver.
type Store interface {
	// Pull fetches ref (a normalized name) and unpacks it with snapshotter,
	// then returns the image.
	Pull(ctx context.Context, ref string, auth *Auth, snapshotter string) (Image, error)
	// List returns every image, one entry per ID.
	List(ctx context.Context) ([]Image, error)
	// Get finds an image by normalized name or by ID.
	Get(ctx context.Context, ref string) (Image, error)
	// Remove deletes every name of the image with this ID.
	Remove(ctx context.Context, id string) error
	// FsInfo reports the filesystems images live on.
	FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error)
}

// Builtin provides the built-in sandbox image when the configured one can't be pulled.
type Builtin interface {
	// ImportPause makes the built-in pause image available and returns its name.
	ImportPause(ctx context.Context) (string, error)
}

// Service implements the CRI image semantics.
type Service struct {
	store        Store
	builtin      Builtin
	sandboxImage string
	// hmu guards snapshotters and own, which a reload replaces.
	hmu sync.RWMutex
	// snapshotters maps handler → snapshotter; "" is the default handler's.
	snapshotters map[string]string
	// own are the stores of handlers that keep their images apart from the
	// shared store (a forwarded handler's remote), by handler.
	own map[string]Store
	log *slog.Logger

	mu     sync.Mutex // guards pinned, pullFailed and sandboxRefs
	pinned map[string]bool
	// sandboxRefs are the sandbox images SandboxImage found, by handler:
	// looked up once, not for every pod (see SandboxImage).
	sandboxRefs map[string]string
	// pullFailed is when the configured sandbox image last failed to pull;
	// until pullRetry has passed, pods use the built-in image without trying again.
	pullFailed time.Time
}

// pullRetry is how long a failed sandbox image pull is not retried.
const pullRetry = 5 * time.Minute

// New returns the image service. snapshotters maps each handler to its
// snapshotter; the entry for "" is used for requests that name no handler.
func New(store Store, builtin Builtin, sandboxImage string, snapshotters map[string]string, log *slog.Logger) *Service {
	return &Service{store: store, builtin: builtin, sandboxImage: sandboxImage, snapshotters: snapshotters, log: log,
		own: map[string]Store{}, pinned: map[string]bool{}, sandboxRefs: map[string]string{}}
}

// SetHandlerStore gives a handler a store of its own: requests whose
// runtime_handler names it (KEP-4216) are served from it, and its
// containers' images are looked up there. Call it before serving.
func (s *Service) SetHandlerStore(handler string, st Store) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.own[handler] = st
}

// Reconfigure replaces the handlers' snapshotters and own stores (a
// configuration reload).
func (s *Service) Reconfigure(snapshotters map[string]string, own map[string]Store) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.snapshotters, s.own = snapshotters, own
}

// ownStore is handler's own store, if it has one.
func (s *Service) ownStore(handler string) (Store, bool) {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	st, ok := s.own[handler]
	return st, ok
}

// storeFor is the store of a request's runtime_handler: its own, or the
// shared one (also for requests that name no handler).
func (s *Service) storeFor(handler string) Store {
	if st, ok := s.ownStore(handler); ok {
		return st
	}
	return s.store
}

// Normalize turns a user's reference into the full name the store uses
// (busybox → docker.io/library/busybox:latest). An image ID stays as it is.
func Normalize(ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("%w: empty reference", ErrInvalid)
	}
	if isID(ref) {
		if !strings.HasPrefix(ref, "sha256:") {
			ref = "sha256:" + ref
		}
		return ref, nil
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalid, ref, err)
	}
	return named.String(), nil
}

func isID(ref string) bool {
	s := strings.TrimPrefix(ref, "sha256:")
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Snapshotter returns the snapshotter for handler.
func (s *Service) Snapshotter(handler string) string {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	if sn, ok := s.snapshotters[handler]; ok {
		return sn
	}
	return s.snapshotters[""]
}

// Pull pulls an image for the handler named in spec (or the default one).
func (s *Service) Pull(ctx context.Context, spec *runtime.ImageSpec, auth *runtime.AuthConfig) (string, error) {
	if spec == nil || spec.Image == "" {
		return "", fmt.Errorf("%w: image spec is empty", ErrInvalid)
	}
	ref, err := Normalize(spec.Image)
	if err != nil {
		return "", err
	}
	img, err := s.pull(ctx, s.storeFor(spec.RuntimeHandler), spec.RuntimeHandler, ref, toAuth(auth))
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// pull pulls ref into st for handler, counted in crimux's metrics.
func (s *Service) pull(ctx context.Context, st Store, handler, ref string, auth *Auth) (Image, error) {
	start := time.Now()
	img, err := st.Pull(ctx, ref, auth, s.Snapshotter(handler))
	label := s.handlerLabel(handler)
	if err != nil {
		metrics.ImagePulls.WithLabelValues(label, "failure").Inc()
		return img, err
	}
	metrics.ImagePullDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
	metrics.ImagePulls.WithLabelValues(label, "success").Inc()
	size := img.Size
	if size == 0 { // a store's Pull may not size the image (containerd's doesn't)
		if full, err := st.Get(ctx, img.ID); err == nil {
			size = full.Size
		}
	}
	metrics.ImagePullBytes.WithLabelValues(label).Add(float64(size))
	return img, nil
}

// handlerLabel is handler as a metric label: a handler the service knows,
// "" for none, and "unknown" for any other string a client sent (which
// must not become a series of its own).
func (s *Service) handlerLabel(handler string) string {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	_, snap := s.snapshotters[handler]
	_, own := s.own[handler]
	if handler == "" || snap || own {
		return handler
	}
	return "unknown"
}

func toAuth(a *runtime.AuthConfig) *Auth {
	if a == nil {
		return nil
	}
	out := &Auth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
	if a.Auth != "" && out.Username == "" {
		if u, p, ok := decodeAuth(a.Auth); ok {
			out.Username, out.Password = u, p
		}
	}
	return out
}

// Status returns the image or ErrNotFound.
func (s *Service) Status(ctx context.Context, spec *runtime.ImageSpec) (Image, error) {
	if spec == nil || spec.Image == "" {
		return Image{}, fmt.Errorf("%w: image spec is empty", ErrInvalid)
	}
	ref, err := Normalize(spec.Image)
	if err != nil {
		return Image{}, err
	}
	return s.storeFor(spec.RuntimeHandler).Get(ctx, ref)
}

// ForContainer finds a container's image for a pod of handler. A handler
// with a store of its own that lacks the image gets it there from the
// registry, by a name the shared store knows it by, when the shared store
// has it: a kubelet that pulls without a runtime_handler (its
// RuntimeClassInImageCriApi gate off) pulled it there. No credentials go
// with that pull.
func (s *Service) ForContainer(ctx context.Context, handler string, spec *runtime.ImageSpec) (Image, error) {
	if spec == nil || spec.Image == "" {
		return Image{}, fmt.Errorf("%w: image spec is empty", ErrInvalid)
	}
	ref, err := Normalize(spec.Image)
	if err != nil {
		return Image{}, err
	}
	own, ok := s.ownStore(handler)
	if !ok {
		return s.store.Get(ctx, ref)
	}
	img, err := own.Get(ctx, ref)
	if !errors.Is(err, ErrNotFound) {
		return img, err
	}
	shared, serr := s.store.Get(ctx, ref)
	if serr != nil {
		return Image{}, err
	}
	// The name asked for first: the container's config names the image by
	// it, and a pull by digest would not give the remote that name.
	var names []string
	if !isID(ref) {
		names = append(names, ref)
	}
	names = append(append(names, shared.RepoTags...), shared.RepoDigests...)
	for _, name := range names {
		if img, perr := s.pull(ctx, own, handler, name, nil); perr == nil {
			s.log.Info("pulled an image for a handler with its own store", "handler", handler, "image", name)
			return img, nil
		} else {
			err = fmt.Errorf("%w; pulling %s for handler %s: %w", err, name, handler, perr)
		}
	}
	return Image{}, err
}

// List returns all images, optionally filtered by a reference.
func (s *Service) List(ctx context.Context, filter *runtime.ImageFilter) ([]Image, error) {
	if filter != nil && filter.Image != nil && filter.Image.Image != "" {
		img, err := s.Status(ctx, filter.Image)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []Image{img}, nil
	}
	return s.storeFor(filter.GetImage().GetRuntimeHandler()).List(ctx)
}

// Remove deletes an image; a missing image is not an error.
func (s *Service) Remove(ctx context.Context, spec *runtime.ImageSpec) error {
	img, err := s.Status(ctx, spec)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st, ok := s.ownStore(spec.RuntimeHandler); ok {
		return st.Remove(ctx, img.ID)
	}
	defer s.ForgetSandboxImage()
	return s.store.Remove(ctx, img.ID)
}

// FsInfo reports the usage of every image filesystem: the shared store's
// and each own store's (each filesystem once). A store that can't answer
// (an unreachable remote) is left out and logged.
func (s *Service) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	out, err := s.store.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, f := range out {
		seen[f.GetFsId().GetMountpoint()] = true
	}
	s.hmu.RLock()
	own := make(map[string]Store, len(s.own))
	for h, st := range s.own {
		own[h] = st
	}
	s.hmu.RUnlock()
	for _, h := range sortedHandlers(own) {
		fs, err := own[h].FsInfo(ctx)
		if err != nil {
			s.log.Warn("image filesystem of a handler's own store", "handler", h, "error", err)
			continue
		}
		for _, f := range fs {
			if mp := f.GetFsId().GetMountpoint(); !seen[mp] {
				seen[mp] = true
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func sortedHandlers(m map[string]Store) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Pinned reports whether the image with this ID is the sandbox image.
func (s *Service) Pinned(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinned[id]
}

// SandboxImage makes sure a sandbox image is present for handler and returns
// its reference: the configured one if it is there or can be pulled, else the
// built-in pause image. The image it returns is pinned.
//
// What it found is remembered per handler and returned without asking the
// store again (the runtime finds the image itself, and a pod whose sandbox
// image went missing calls ForgetSandboxImage); the built-in image is
// remembered until the configured one may be tried again.
func (s *Service) SandboxImage(ctx context.Context, handler string) (string, error) {
	ref, err := Normalize(s.sandboxImage)
	if err != nil {
		return "", fmt.Errorf("sandbox_image: %w", err)
	}
	s.mu.Lock()
	known, ok := s.sandboxRefs[handler]
	s.mu.Unlock()
	if ok && (known == ref || !s.mayRetryPull()) {
		return known, nil
	}
	name, err := s.findSandboxImage(ctx, handler, ref)
	if err == nil {
		s.mu.Lock()
		s.sandboxRefs[handler] = name
		s.mu.Unlock()
	}
	return name, err
}

// ForgetSandboxImage makes SandboxImage look the sandbox images up again
// (a runtime did not find the one it was given).
func (s *Service) ForgetSandboxImage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sandboxRefs)
}

// findSandboxImage is SandboxImage's lookup: ref if present or pullable,
// else the built-in pause image.
func (s *Service) findSandboxImage(ctx context.Context, handler, ref string) (string, error) {
	img, err := s.store.Get(ctx, ref)
	if err != nil && s.mayRetryPull() {
		img, err = s.pull(ctx, s.store, handler, ref, nil)
		if err != nil {
			s.mu.Lock()
			s.pullFailed = time.Now()
			s.mu.Unlock()
		}
	}
	if err == nil {
		s.pin(img.ID)
		return ref, nil
	}
	if s.builtin == nil {
		return "", fmt.Errorf("sandbox image %q: %w", ref, err)
	}
	s.log.Warn("sandbox image unavailable; using the built-in pause image", "image", ref, "error", err)
	name, berr := s.builtin.ImportPause(ctx)
	if berr != nil {
		return "", fmt.Errorf("sandbox image %q: %w; built-in pause image: %w", ref, err, berr)
	}
	bimg, berr := s.store.Get(ctx, name)
	if berr != nil {
		return "", fmt.Errorf("built-in pause image %q: %w", name, berr)
	}
	s.pin(bimg.ID)
	return name, nil
}

func (s *Service) mayRetryPull() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pullFailed.IsZero() || time.Since(s.pullFailed) > pullRetry
}

func (s *Service) pin(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinned[id] = true
}

// ToCRI converts an image for the CRI answers.
func (s *Service) ToCRI(img Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      s.Pinned(img.ID),
		Spec:        &runtime.ImageSpec{Image: img.ID, Annotations: img.Annotations},
	}
	user := img.User
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user = user[:i]
	}
	if user != "" {
		if uid, ok := parseUint(user); ok {
			out.Uid = &runtime.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}

func parseUint(s string) (int64, bool) {
	var n int64
	if s == "" {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
