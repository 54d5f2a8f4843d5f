package router

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/backends"
	"github.com/crimux/crimux/image"
	"github.com/crimux/crimux/internal/fault"
	"github.com/crimux/crimux/sandbox"
)

func containerName(c *runtime.ContainerMetadata, s *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.Name, s.Name, s.Namespace, s.Uid, c.Attempt)
}

// CreateContainer creates a container in a ready sandbox.
func (r *Router) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if err := validateContainerConfig(cfg); err != nil {
		return nil, err
	}
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", req.PodSandboxId, err)
	}
	// Under the pod's lock, the pod can't be stopped or removed while its
	// container is made (nor a container be left for a removed pod).
	unlock := r.lockPod(sb.ID)
	defer unlock()
	if _, err := r.sandboxes.Get(sb.ID); err != nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", req.PodSandboxId, err)
	}
	if st := sb.Status(); st.State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("%w: pod sandbox %s is not ready", backends.ErrPrecondition, sb.ID)
	}
	rt := r.runtimeOf(sb)
	name := containerName(cfg.Metadata, sb.Config.Metadata)
	id := newID()
	if err := r.containerNames.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("create container %q: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			r.containerNames.Release(name, id)
		}
	}()
	cfg, verr := r.resolveImageVolumes(ctx, sb.Handler, cfg)
	if verr != nil {
		return nil, verr
	}
	img, err := r.images.ForContainer(ctx, sb.Handler, cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q of container %q: %w", cfg.Image.Image, cfg.Metadata.Name, err)
	}
	imgName := imageName(cfg.Image.Image, img)
	logPath := ""
	bc := backends.Container{ID: id, Sandbox: r.backendSandbox(sb), Config: cfg, Image: imgName, ImageID: img.ID}
	if sb.Config.LogDirectory != "" && cfg.LogPath != "" {
		// validateContainerConfig checked that log_path stays inside.
		logPath = filepath.Join(sb.Config.LogDirectory, cfg.LogPath)
		bc.LogDir, bc.LogPath = sb.Config.LogDirectory, cfg.LogPath
	}
	// The record is written once the runtime knows the user, alongside the
	// rest of its create where it can (backends.Container.Commit): a crash
	// after it leaves a record that recovery lists with the runtime's state
	// (EXITED, reason Unknown, where the runtime had not made it yet).
	var c *sandbox.Container
	var commitOnce sync.Once
	var committing bool
	var commitErr error
	bc.Commit = func(user backends.User) error {
		commitOnce.Do(func() {
			committing = true
			rec := sandbox.NewContainer(sandbox.ContainerMetadata{
				ID: id, Name: name, SandboxID: sb.ID, Config: cfg,
				ImageRef: img.ID, ImageName: imgName, LogPath: logPath, CreatedAt: time.Now().UnixNano(),
				User: recordUser(user),
			}, sandbox.ContainerStatus{State: runtime.ContainerState_CONTAINER_CREATED})
			if commitErr = r.ckpt.SaveContainer(rec); commitErr == nil {
				c = rec
				fault.Point("create-container/after-record")
			}
		})
		return commitErr
	}
	user, err := rt.CreateContainer(ctx, bc)
	if err == nil {
		fault.Point("create-container/after-create")
		err = bc.Commit(user)
	}
	if err != nil {
		if committing {
			// The runtime went on to make the container, or had made it:
			// remove it (missing is fine) and the record.
			cctx, cancel := cleanupContext()
			defer cancel()
			if rerr := rt.RemoveContainer(cctx, id); rerr != nil {
				r.log.Error("roll back container", "id", id, "error", rerr)
			}
			if c != nil {
				if derr := r.ckpt.DeleteContainer(c); derr != nil {
					r.log.Error("roll back container record", "id", id, "error", derr)
				}
			}
		}
		return nil, fmt.Errorf("create container %q in pod %s: %w", name, sb.ID, err)
	}
	r.containers.Add(id, c)
	ok = true
	r.emit(c, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// recordUser is the user the runtime chose, in the container record's own
// type: the driver contract's may change, the records on disk must not.
func recordUser(u backends.User) *sandbox.User {
	return &sandbox.User{UID: u.UID, GID: u.GID, Groups: u.Groups}
}

// resolveImageVolumes fills in the image ID of each image volume (which
// ContainerStatus reports) on a copy of the config.
func (r *Router) resolveImageVolumes(ctx context.Context, handler string, cfg *runtime.ContainerConfig) (*runtime.ContainerConfig, error) {
	has := false
	for _, m := range cfg.Mounts {
		has = has || m.Image != nil && m.Image.Image != ""
	}
	if !has {
		return cfg, nil
	}
	cfg = proto.Clone(cfg).(*runtime.ContainerConfig)
	for _, m := range cfg.Mounts {
		if m.Image == nil || m.Image.Image == "" {
			continue
		}
		img, err := r.images.ForContainer(ctx, handler, m.Image)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: image %q: %w", m.ContainerPath, m.Image.Image, err)
		}
		m.Image.ImageRef = img.ID
	}
	return cfg, nil
}

// imageName picks the store name to create a container from: the
// normalized reference the user gave, or a name of the image when they gave its ID.
func imageName(ref string, img image.Image) string {
	if n, err := image.Normalize(ref); err == nil && n != img.ID {
		return n
	}
	if len(img.RepoTags) > 0 {
		return img.RepoTags[0]
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}
