package test

import (
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/test/harness"
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
