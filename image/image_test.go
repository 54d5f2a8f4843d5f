package image

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "127.0.0.1:5000/x/y", want: "127.0.0.1:5000/x/y:latest"},
		{in: "sha256:" + sixtyFour, want: "sha256:" + sixtyFour},
		{in: sixtyFour, want: "sha256:" + sixtyFour},
		{in: "", err: "empty"},
		{in: "bad ref with spaces", err: "invalid image reference"},
	} {
		got, err := Normalize(tc.in)
		if tc.err != "" {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("Normalize(%q) err = %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type store struct {
	gets  int
	imgs  map[string]Image
	pulls int
	Err   error
}

func (s *store) Pull(ctx context.Context, ref string, a *Auth, sn string) (Image, error) {
	s.pulls++
	if s.Err != nil {
		return Image{}, s.Err
	}
	return s.Get(ctx, ref)
}
func (s *store) List(ctx context.Context) ([]Image, error) { return nil, nil }
func (s *store) Get(ctx context.Context, ref string) (Image, error) {
	s.gets++
	if i, ok := s.imgs[ref]; ok {
		return i, nil
	}
	return Image{}, ErrNotFound
}
func (s *store) Remove(ctx context.Context, id string) error { return nil }
func (s *store) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	return nil, nil
}

type builtin struct{ s *store }

func (b builtin) ImportPause(ctx context.Context) (string, error) {
	b.s.imgs["localhost/pause:builtin"] = Image{ID: "sha256:builtin"}
	return "localhost/pause:builtin", nil
}

func TestSandboxImageFallsBackAndPins(t *testing.T) {
	st := &store{imgs: map[string]Image{}, Err: errors.New("no registry")}
	s := New(st, builtin{st}, "registry.k8s.io/pause:3.10", map[string]string{"": "overlayfs"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 3; i++ {
		ref, err := s.SandboxImage(context.Background(), "")
		if err != nil || ref != "localhost/pause:builtin" {
			t.Fatalf("SandboxImage = %q, %v", ref, err)
		}
	}
	if st.pulls != 1 {
		t.Errorf("a failed sandbox image pull was retried %d times at once", st.pulls)
	}
	if !s.Pinned("sha256:builtin") {
		t.Error("built-in image not pinned")
	}
	if img := s.ToCRI(Image{ID: "sha256:builtin"}); !img.Pinned {
		t.Error("ToCRI lost the pin")
	}
}

// The sandbox image is looked up once per handler, not for every pod, and
// again after ForgetSandboxImage (a runtime didn't find it) or a removal.
func TestSandboxImageRemembered(t *testing.T) {
	st := &store{imgs: map[string]Image{"registry.k8s.io/pause:3.10": {ID: "sha256:p"}}}
	s := New(st, builtin{st}, "registry.k8s.io/pause:3.10", map[string]string{"": "overlayfs"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	for range 5 {
		if ref, err := s.SandboxImage(ctx, "runc"); err != nil || ref != "registry.k8s.io/pause:3.10" {
			t.Fatalf("SandboxImage = %q, %v", ref, err)
		}
	}
	if st.gets != 1 {
		t.Fatalf("5 pods looked the sandbox image up %d times, want 1", st.gets)
	}
	if _, err := s.SandboxImage(ctx, "gvisor"); err != nil || st.gets != 2 {
		t.Fatalf("another handler: %d lookups, %v; want its own lookup", st.gets, err)
	}
	s.ForgetSandboxImage()
	if _, err := s.SandboxImage(ctx, "runc"); err != nil || st.gets != 3 {
		t.Fatalf("after ForgetSandboxImage: %d lookups, %v; want one more", st.gets, err)
	}
	if err := s.Remove(ctx, &runtime.ImageSpec{Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	st.imgs["docker.io/library/busybox:latest"] = Image{ID: "sha256:b"}
	if err := s.Remove(ctx, &runtime.ImageSpec{Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	n := st.gets
	if _, err := s.SandboxImage(ctx, "runc"); err != nil || st.gets != n+1 {
		t.Fatalf("after an image removal: %d lookups (was %d), %v; want one more", st.gets, n, err)
	}
}

func TestToCRIUser(t *testing.T) {
	s := New(&store{}, nil, "p", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, tc := range []struct {
		user     string
		uid      int64
		hasUID   bool
		username string
	}{
		{user: "1002", uid: 1002, hasUID: true},
		{user: "1003:1004", uid: 1003, hasUID: true},
		{user: "www-data", username: "www-data"},
		{user: "www-data:1004", username: "www-data"},
		{user: ""},
	} {
		img := s.ToCRI(Image{ID: "x", User: tc.user})
		if (img.Uid != nil) != tc.hasUID || img.GetUid().GetValue() != tc.uid || img.Username != tc.username {
			t.Errorf("user %q → uid %v username %q", tc.user, img.Uid, img.Username)
		}
	}
}

// pullStore is a store whose Pull copies from a registry and records the
// names it pulled by; FsInfo reports one filesystem at mount.
type pullStore struct {
	store
	registry map[string]Image
	pulled   []string
	mount    string
}

func (s *pullStore) Pull(ctx context.Context, ref string, a *Auth, sn string) (Image, error) {
	s.pulled = append(s.pulled, ref)
	img, ok := s.registry[ref]
	if !ok {
		return Image{}, ErrNotFound
	}
	s.imgs[ref] = img
	return img, nil
}

func (s *pullStore) List(ctx context.Context) ([]Image, error) {
	var out []Image
	for _, i := range s.imgs {
		out = append(out, i)
	}
	return out, nil
}

func (s *pullStore) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	return []*runtime.FilesystemUsage{{FsId: &runtime.FilesystemIdentifier{Mountpoint: s.mount}}}, nil
}

// A handler with a store of its own (a forwarded handler) is served from it
// when a request names it (KEP-4216); requests without a handler keep to
// the shared store; a container's image the shared store has is pulled into
// the handler's store by the name the container asks for; FsInfo reports
// both filesystems once each.
func TestHandlerStores(t *testing.T) {
	ctx := context.Background()
	busybox := Image{ID: "sha256:b", RepoTags: []string{"docker.io/library/busybox:latest"}, RepoDigests: []string{"docker.io/library/busybox@sha256:d"}}
	registry := map[string]Image{"docker.io/library/busybox:latest": busybox, "docker.io/library/busybox@sha256:d": busybox, "docker.io/library/only:1": {ID: "sha256:o"}}
	shared := &pullStore{store: store{imgs: map[string]Image{}}, registry: registry, mount: "/shared"}
	own := &pullStore{store: store{imgs: map[string]Image{}}, registry: registry, mount: "/remote"}
	s := New(shared, nil, "p", map[string]string{"": "overlayfs"}, slog.New(slog.DiscardHandler))
	s.SetHandlerStore("fwd", own)

	if _, err := s.Pull(ctx, &runtime.ImageSpec{Image: "only:1", RuntimeHandler: "fwd"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(ctx, &runtime.ImageSpec{Image: "only:1"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("an image pulled for fwd only, without a handler: %v, want not found", err)
	}
	if img, err := s.Status(ctx, &runtime.ImageSpec{Image: "only:1", RuntimeHandler: "fwd"}); err != nil || img.ID != "sha256:o" {
		t.Errorf("for fwd: %v %v", img, err)
	}
	if l, err := s.List(ctx, &runtime.ImageFilter{Image: &runtime.ImageSpec{RuntimeHandler: "fwd"}}); err != nil || len(l) != 1 {
		t.Errorf("List for fwd: %v %v", l, err)
	}
	if l, err := s.List(ctx, nil); err != nil || len(l) != 0 {
		t.Errorf("List without a handler: %v %v, want the shared store's (empty)", l, err)
	}

	// The kubelet pulled busybox without a handler; a fwd container needs it.
	if _, err := s.Pull(ctx, &runtime.ImageSpec{Image: "busybox"}, nil); err != nil {
		t.Fatal(err)
	}
	img, err := s.ForContainer(ctx, "fwd", &runtime.ImageSpec{Image: "busybox"})
	if err != nil || img.ID != "sha256:b" || len(own.pulled) != 2 || own.pulled[1] != "docker.io/library/busybox:latest" {
		t.Errorf("ForContainer fwd busybox: %v %v; the remote pulled %v, want busybox by its tag", img, err, own.pulled)
	}
	// By ID (as the kubelet names it): pulled by a name the shared store
	// knows the image by.
	shared.imgs["sha256:"+sixtyFour] = Image{ID: "sha256:" + sixtyFour, RepoTags: []string{"docker.io/library/other:2"}}
	registry["docker.io/library/other:2"] = Image{ID: "sha256:" + sixtyFour}
	if img, err := s.ForContainer(ctx, "fwd", &runtime.ImageSpec{Image: sixtyFour}); err != nil || img.ID != "sha256:"+sixtyFour ||
		own.pulled[len(own.pulled)-1] != "docker.io/library/other:2" {
		t.Errorf("ForContainer by ID: %v %v; the remote pulled %v, want other:2 by its tag", img, err, own.pulled)
	}
	if _, err := s.ForContainer(ctx, "fwd", &runtime.ImageSpec{Image: "nowhere:1"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("an image neither store has: %v, want not found", err)
	}
	if _, err := s.ForContainer(ctx, "runc", &runtime.ImageSpec{Image: "only:1"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a local handler's container and an image only fwd has: %v, want not found", err)
	}

	fs, err := s.FsInfo(ctx)
	if err != nil || len(fs) != 2 || fs[0].FsId.Mountpoint != "/shared" || fs[1].FsId.Mountpoint != "/remote" {
		t.Errorf("FsInfo: %v %v", fs, err)
	}
	if err := s.Remove(ctx, &runtime.ImageSpec{Image: "only:1", RuntimeHandler: "fwd"}); err != nil {
		t.Fatal(err)
	}
}
