package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/opencontainers/image-spec/identity"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/image"
)

// imageVolumeKey names the snapshot view of a container's image volume.
func imageVolumeKey(containerID string, i int) string {
	return fmt.Sprintf("crimux-imagevol-%s-%d", containerID, i)
}

func (d *Driver) imageVolumeDir(containerID string) string {
	return filepath.Join(d.opts.StateDir, "imagevols", containerID)
}

// imageByRef finds an image by name, digest name or ID.
func (d *Driver) imageByRef(ctx context.Context, ref string) (client.Image, error) {
	name, err := image.Normalize(ref)
	if err != nil {
		return nil, err
	}
	if img, err := d.client.GetImage(ctx, name); err == nil {
		return img, nil
	}
	found, err := d.Images().Get(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, n := range append(found.RepoTags, found.RepoDigests...) {
		if img, err := d.client.GetImage(ctx, n); err == nil {
			return img, nil
		}
	}
	return nil, fmt.Errorf("%w: %q has no name to load it by", image.ErrNotFound, ref)
}

// imageVolumes mounts a read-only view of each image volume's root
// filesystem (KEP-4639) and returns its host path (sub path included) by the
// mount's index in the container config.
func (r *Runtime) imageVolumes(ctx context.Context, c backends.Container) (map[int]string, error) {
	out := map[int]string{}
	for i, m := range c.Config.Mounts {
		if m.Image == nil || m.Image.Image == "" {
			continue
		}
		if !m.Readonly {
			return nil, fmt.Errorf("%w: image volume %s must be read-only", backends.ErrInvalid, m.ContainerPath)
		}
		ref := m.Image.ImageRef
		if ref == "" {
			ref = m.Image.Image
		}
		img, err := r.d.imageByRef(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", m.ContainerPath, err)
		}
		if err := r.ensureUnpacked(ctx, img); err != nil {
			return nil, err
		}
		diffIDs, err := img.RootFS(ctx)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", m.ContainerPath, mapErr(err))
		}
		sn := r.d.client.SnapshotService(r.h.Snapshotter)
		mounts, err := sn.View(ctx, imageVolumeKey(c.ID, i), identity.ChainID(diffIDs).String())
		if err != nil {
			return nil, fmt.Errorf("image volume %s: snapshot view: %w", m.ContainerPath, mapErr(err))
		}
		dir := filepath.Join(r.d.imageVolumeDir(c.ID), fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := mount.All(mounts, dir); err != nil {
			return nil, fmt.Errorf("image volume %s: mount: %w", m.ContainerPath, err)
		}
		src := dir
		if sub := m.ImageSubPath; sub != "" {
			clean := filepath.Clean("/" + sub)
			src = filepath.Join(dir, clean)
			if strings.Contains(sub, "..") || !strings.HasPrefix(src, dir) {
				return nil, fmt.Errorf("%w: image volume %s: sub path %q leaves the image", backends.ErrInvalid, m.ContainerPath, sub)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("%w: image volume %s: sub path %q does not exist in image %s", backends.ErrInvalid, m.ContainerPath, sub, m.Image.Image)
			}
		}
		out[i] = src
	}
	return out, nil
}

// removeImageVolumes unmounts and removes a container's image volume views.
func (r *Runtime) removeImageVolumes(ctx context.Context, containerID string) error {
	dir := r.d.imageVolumeDir(containerID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	sn := r.d.client.SnapshotService(r.h.Snapshotter)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := mount.UnmountAll(p, 0); err != nil {
			return fmt.Errorf("unmount image volume %s: %w", p, err)
		}
		var i int
		if _, err := fmt.Sscan(e.Name(), &i); err == nil {
			if err := sn.Remove(ctx, imageVolumeKey(containerID, i)); err != nil && !isNotFound(err) {
				return fmt.Errorf("remove image volume snapshot: %w", err)
			}
		}
	}
	return os.RemoveAll(dir)
}
