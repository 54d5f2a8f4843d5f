package cri

import (
	"context"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/image"
)

// Images is a forwarded handler's image store: the remote's image service,
// asked for the remote handler (KEP-4216: an image is present for a
// handler only if that handler's store has it).
type Images struct {
	r *Runtime
}

var _ image.Store = (*Images)(nil)

// Images returns the image store of a configured handler of this driver, or nil.
func (d *Driver) Images(handler string) *Images {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.runtimes[handler]; ok && r.configured {
		return &Images{r: r}
	}
	return nil
}

func (s *Images) spec(ref string) *runtime.ImageSpec {
	return &runtime.ImageSpec{Image: ref, RuntimeHandler: s.r.opts.RemoteHandler}
}

// Pull implements image.Store; the remote chooses its snapshotter.
func (s *Images) Pull(ctx context.Context, ref string, auth *image.Auth, _ string) (image.Image, error) {
	ctx, cancel := s.r.call(ctx)
	defer cancel()
	req := &runtime.PullImageRequest{Image: s.spec(ref)}
	if auth != nil {
		req.Auth = &runtime.AuthConfig{Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken}
	}
	resp, err := s.r.rm.is.PullImage(ctx, req)
	if err != nil {
		return image.Image{}, fmt.Errorf("pull %s on the remote: %w", ref, mapErr(err))
	}
	return s.Get(ctx, resp.ImageRef)
}

// List implements image.Store.
func (s *Images) List(ctx context.Context) ([]image.Image, error) {
	ctx, cancel := s.r.call(ctx)
	defer cancel()
	resp, err := s.r.rm.is.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{RuntimeHandler: s.r.opts.RemoteHandler}}})
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]image.Image, 0, len(resp.Images))
	for _, img := range resp.Images {
		out = append(out, fromCRI(img))
	}
	return out, nil
}

// Get implements image.Store.
func (s *Images) Get(ctx context.Context, ref string) (image.Image, error) {
	ctx, cancel := s.r.call(ctx)
	defer cancel()
	resp, err := s.r.rm.is.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: s.spec(ref)})
	if err != nil {
		return image.Image{}, mapErr(err)
	}
	if resp.Image == nil {
		return image.Image{}, fmt.Errorf("%w: %s (on the remote of handler %s)", image.ErrNotFound, ref, s.r.name)
	}
	return fromCRI(resp.Image), nil
}

// Remove implements image.Store.
func (s *Images) Remove(ctx context.Context, id string) error {
	ctx, cancel := s.r.call(ctx)
	defer cancel()
	_, err := s.r.rm.is.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: s.spec(id)})
	return mapErr(err)
}

// FsInfo implements image.Store: the remote's image filesystems.
func (s *Images) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	ctx, cancel := s.r.call(ctx)
	defer cancel()
	resp, err := s.r.rm.is.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil {
		return nil, mapErr(err)
	}
	return resp.ImageFilesystems, nil
}

func fromCRI(img *runtime.Image) image.Image {
	out := image.Image{ID: img.Id, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests, Size: img.Size, User: img.Username}
	if img.Uid != nil {
		out.User = fmt.Sprint(img.Uid.Value)
	}
	if img.Spec != nil {
		out.Annotations = img.Spec.Annotations
	}
	return out
}
