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
