package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/crimux/crimux/test/harness"
	"github.com/opencontainers/image-spec/identity"
)

func TestImages(t *testing.T) {
	needEnv(t)
	is := env.Image
	ref, err := is.PullImage(ctx(t), &runtime.ImageSpec{Image: "crimuxtest/user-www-data"}, nil, nil)
	if err != nil {
		t.Fatalf("pull by short name: %v", err)
	}
	if !strings.HasPrefix(ref, "sha256:") {
		t.Errorf("image ref %q", ref)
	}
	st, err := is.ImageStatus(ctx(t), &runtime.ImageSpec{Image: harness.UserWWWData}, false)
	if err != nil || st.Image == nil {
		t.Fatalf("status: %v %v", st, err)
	}
	img := st.Image
	if img.Id != ref || img.Username != "www-data" || img.Uid != nil || img.Size == 0 {
		t.Errorf("status of www-data image: %+v", img)
	}
	if len(img.RepoTags) != 1 || img.RepoTags[0] != harness.UserWWWData || len(img.RepoDigests) != 1 || !strings.Contains(img.RepoDigests[0], "@sha256:") {
		t.Errorf("names: %v %v", img.RepoTags, img.RepoDigests)
	}
	// By ID and by digest.
	for _, r := range []string{ref, img.RepoDigests[0], strings.TrimPrefix(ref, "sha256:")} {
		st, err := is.ImageStatus(ctx(t), &runtime.ImageSpec{Image: r}, false)
		if err != nil || st.Image == nil || st.Image.Id != ref {
			t.Errorf("status by %q: %v %v", r, st, err)
		}
	}
	uidRef, err := is.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.UserUID}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = is.ImageStatus(ctx(t), &runtime.ImageSpec{Image: uidRef}, false)
	if st.Image.GetUid().GetValue() != 1002 || st.Image.Username != "" {
		t.Errorf("uid image: %+v", st.Image)
	}
	list, err := is.ListImages(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range list {
		found = found || i.Id == ref
	}
	if !found {
		t.Errorf("list lacks %s", ref)
	}
	filtered, err := is.ListImages(ctx(t), &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: harness.UserUID}})
	if err != nil || len(filtered) != 1 || filtered[0].Id != uidRef {
		t.Errorf("filtered list: %v %v", filtered, err)
	}
	fs, err := is.ImageFsInfo(ctx(t))
	if err != nil || len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].FsId.GetMountpoint() == "" || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 {
		t.Errorf("fs info: %v %v", fs, err)
	}
	if err := is.RemoveImage(ctx(t), &runtime.ImageSpec{Image: harness.UserWWWData}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st, err = is.ImageStatus(ctx(t), &runtime.ImageSpec{Image: ref}, false)
	if err != nil || st.Image != nil {
		t.Errorf("status after remove: %v %v", st, err)
	}
	if err := is.RemoveImage(ctx(t), &runtime.ImageSpec{Image: harness.UserWWWData}); err != nil {
		t.Errorf("removing a removed image: %v", err)
	}
	if _, err := is.PullImage(ctx(t), &runtime.ImageSpec{Image: "docker.io/library/does-not-exist:1"}, nil, nil); err == nil {
		t.Errorf("pull of a missing image succeeded")
	}
	if _, err := rawImageClient(t).PullImage(ctx(t), &runtime.PullImageRequest{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("pull with no image: %v", err)
	}
}

// The sandbox image can't be pulled here (no registry serves it), so pods run
// on crimux's built-in pause image, which is pinned.
func TestBuiltinPauseImage(t *testing.T) {
	needEnv(t)
	pod := podConfig(t, "pause")
	runPod(t, pod)
	list, err := env.Image.ListImages(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range list {
		for _, tag := range i.RepoTags {
			if tag == "localhost/crimux/pause:builtin" {
				if !i.Pinned {
					t.Errorf("built-in pause image is not pinned")
				}
				return
			}
		}
	}
	t.Errorf("no built-in pause image in %v", list)
}

// crimux keeps containerd's list of image records while containerd's
// events say it is current: image records made, moved and deleted by
// another client are seen by ImageStatus and by CreateContainer, and an
// image crimux pulls is usable at once.
func TestImageRecordsFollowContainerd(t *testing.T) {
	needEnv(t)
	pullBusybox(t)
	echoRef, err := env.Image.PullImage(ctx(t), &runtime.ImageSpec{Image: harness.EntrypointEcho}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ctrdClient(t)
	cctx := ctx(t)
	bb, err := c.GetImage(cctx, harness.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	echo, err := c.GetImage(cctx, harness.EntrypointEcho)
	if err != nil {
		t.Fatal(err)
	}
	bbSt, err := env.Image.ImageStatus(ctx(t), &runtime.ImageSpec{Image: harness.Busybox}, false)
	if err != nil || bbSt.Image == nil {
		t.Fatalf("busybox status: %v %v", bbSt, err)
	}
	name := fmt.Sprintf("crimux.test/moved-%d:v1", time.Now().UnixNano())
	is := c.ImageService()
	t.Cleanup(func() { _ = is.Delete(context.Background(), name) })
	idOf := func() (string, error) {
		st, err := env.Image.ImageStatus(ctx(t), &runtime.ImageSpec{Image: name}, false)
		if err != nil {
			return "", err
		}
		if st.Image == nil {
			return "", nil
		}
		return st.Image.Id, nil
	}
	want := func(id string) func() error {
		return func() error {
			got, err := idOf()
			if err != nil || got != id {
				return fmt.Errorf("ImageStatus %s: %q, %v; want %q", name, got, err, id)
			}
			return nil
		}
	}
	if _, err := is.Create(cctx, images.Image{Name: name, Target: bb.Target()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a name made outside crimux", want(bbSt.Image.Id))
	if _, err := is.Update(cctx, images.Image{Name: name, Target: echo.Target()}, "target"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a name moved outside crimux", want(echoRef))
	// A container made from the moved name is made from the image it names now.
	pod := podConfig(t, "moved")
	id := runPod(t, pod)
	cfg := ctrConfig("moved", "true")
	cfg.Image = &runtime.ImageSpec{Image: name}
	cid, err := env.Runtime.CreateContainer(ctx(t), id, cfg, pod)
	if err != nil {
		t.Fatal(err)
	}
	if st := containerState(t, cid); st.ImageRef != echoRef {
		t.Errorf("container made from %s has image %s, want %s", name, st.ImageRef, echoRef)
	}
	if cont, err := c.LoadContainer(cctx, cid); err != nil {
		t.Error(err)
	} else if info, err := cont.Info(cctx); err != nil || info.Image != name {
		t.Errorf("containerd's record of the container: image %q, %v", info.Image, err)
	} else if sn, err := c.SnapshotService(info.Snapshotter).Stat(cctx, info.SnapshotKey); err != nil {
		t.Error(err)
	} else if chain, err := echo.RootFS(cctx); err != nil || sn.Parent != identity.ChainID(chain).String() {
		t.Errorf("the container's rootfs is on %s, want the moved name's image's chain (%v)", sn.Parent, err)
	}
	if err := is.Delete(cctx, name); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a name deleted outside crimux", want(""))
}
