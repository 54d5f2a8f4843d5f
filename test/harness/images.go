package harness

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crimux/crimux/test/images"
)

// Test image names, as tests pull them; mirrors send them to the local registry.
const (
	Busybox        = "docker.io/library/busybox:latest"
	UserWWWData    = "docker.io/crimuxtest/user-www-data:latest"
	UserUID        = "docker.io/crimuxtest/user-1002:latest"
	EntrypointEcho = "crimux.test/echo-entrypoint:v1"
)

// PushTestImages builds and pushes every test image.
func PushTestImages(reg *images.Registry) error {
	bb, err := images.Busybox()
	if err != nil {
		return err
	}
	set := map[string]func() (v1.Image, error){
		"library/busybox:latest": func() (v1.Image, error) { return bb, nil },
		"crimuxtest/user-www-data:latest": func() (v1.Image, error) {
			return images.WithConfig(bb, func(c *v1.Config) { c.User = "www-data" })
		},
		"crimuxtest/user-1002:latest": func() (v1.Image, error) {
			return images.WithConfig(bb, func(c *v1.Config) { c.User = "1002" })
		},
		"echo-entrypoint:v1": func() (v1.Image, error) {
			return images.WithConfig(bb, func(c *v1.Config) {
				c.Entrypoint = []string{"echo", "entry"}
				c.Cmd = []string{"from-image-cmd"}
				c.Env = append(c.Env, "FROM_IMAGE=yes")
				c.WorkingDir = "/tmp"
			})
		},
	}
	for ref, mk := range set {
		img, err := mk()
		if err != nil {
			return fmt.Errorf("build %s: %w", ref, err)
		}
		if _, err := reg.Push(ref, img); err != nil {
			return err
		}
	}
	return nil
}
