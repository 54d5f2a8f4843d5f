package containerd

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
)

// probeFeatures asks a handler's OCI runtime what it does (`runc
// features`: the "rro" mount option, idmapped mounts) and its snapshotter
// whether it id-maps a rootfs ("remap-ids").
func (d *Driver) probeFeatures(o HandlerOptions) probedFeatures {
	var p probedFeatures
	if o.RuntimeType == RuntimeRunc && o.RuntimePath != "" {
		p.rro, p.idmap = probeRunc(o.RuntimePath)
	}
	if p.idmap {
		p.snapshotterRemaps = d.snapshotterRemaps(o.Snapshotter)
	}
	return p
}

func probeRunc(bin string) (rro, idmap bool) {
	out, err := exec.Command(bin, "features").Output()
	if err != nil {
		return false, false
	}
	var f struct {
		MountOptions []string `json:"mountOptions"`
		Linux        struct {
			MountExtensions struct {
				IDMap struct {
					Enabled *bool `json:"enabled"`
				} `json:"idmap"`
			} `json:"mountExtensions"`
		} `json:"linux"`
	}
	if json.Unmarshal(out, &f) != nil {
		return false, false
	}
	idmap = f.Linux.MountExtensions.IDMap.Enabled != nil && *f.Linux.MountExtensions.IDMap.Enabled
	return slices.Contains(f.MountOptions, "rro"), idmap
}

// snapshotterRemaps: the handler's snapshotter id-maps a rootfs itself.
func (d *Driver) snapshotterRemaps(snapshotter string) bool {
	ctx, cancel := context.WithTimeout(d.ctx(context.Background()), d.opts.Timeout)
	defer cancel()
	caps, err := d.client.GetSnapshotterCapabilities(ctx, snapshotter)
	if err != nil {
		d.log.Warn("snapshotter capabilities", "snapshotter", snapshotter, "error", err)
		return false
	}
	return slices.Contains(caps, "remap-ids")
}
