package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/image-spec/identity"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/fsroot"
)

// imageVolumeKey names the snapshot view of a container's image volume.
func imageVolumeKey(containerID string, i int) string {
	return fmt.Sprintf("%s%s-%d", imageVolumePrefix, containerID, i)
}

const imageVolumePrefix = "crimux-imagevol-"

// imageVolumeContainer is the container ID of an image volume's snapshot key.
func imageVolumeContainer(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, imageVolumePrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
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
		sn := r.d.client.SnapshotService(r.opts.Snapshotter)
		mounts, err := sn.View(ctx, imageVolumeKey(c.ID, i), identity.ChainID(diffIDs).String(),
			snapshots.WithLabels(map[string]string{labelInstance: r.d.opts.Instance}))
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
			if src, err = bindSubPath(dir, sub); err != nil {
				return nil, fmt.Errorf("%w: image volume %s: sub path %q of image %s: %v", backends.ErrInvalid, m.ContainerPath, sub, m.Image.Image, err)
			}
		}
		out[i] = src
	}
	return out, nil
}

// bindSubPath resolves an image volume's sub path inside the volume's root
// at dir, as if that root were "/" (a symlink in the image never reaches the
// node's files), and bind-mounts the object it resolved to, read-only, at
// dir+".sub", which it returns: what the container gets is the object that
// was checked, whatever any path names later.
func bindSubPath(dir, sub string) (string, error) {
	if err := fsroot.CheckLocal(sub); err != nil {
		return "", err
	}
	f, err := fsroot.OpenInRoot(dir, sub)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errors.New("does not exist in the image")
		}
		return "", err
	}
	defer f.Close()
	isDir, err := fsroot.IsDir(f)
	if err != nil {
		return "", err
	}
	target := dir + ".sub"
	if isDir {
		err = os.Mkdir(target, 0o755)
	} else {
		var t *os.File
		if t, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444); err == nil {
			t.Close()
		}
	}
	if err != nil {
		return "", err
	}
	if err := fsroot.BindFD(f, target, true); err != nil {
		_ = os.Remove(target)
		return "", err
	}
	return target, nil
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
	if err := r.d.unmountImageVolumes(containerID); err != nil {
		return err
	}
	sn := r.d.client.SnapshotService(r.opts.Snapshotter)
	for _, e := range ents {
		if i, err := strconv.Atoi(e.Name()); err == nil {
			if err := sn.Remove(ctx, imageVolumeKey(containerID, i)); err != nil && !isNotFound(err) {
				return fmt.Errorf("remove image volume snapshot: %w", err)
			}
		}
	}
	return nil
}

// unmountImageVolumes unmounts a container's image volumes and removes
// their dir. Sub path binds ("<i>.sub") sort after their volume ("<i>"):
// they are unmounted first.
func (d *Driver) unmountImageVolumes(containerID string) error {
	dir := d.imageVolumeDir(containerID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for j := len(ents) - 1; j >= 0; j-- {
		p := filepath.Join(dir, ents[j].Name())
		if err := mount.UnmountAll(p, 0); err != nil {
			return fmt.Errorf("unmount image volume %s: %w", p, err)
		}
	}
	return os.RemoveAll(dir)
}
