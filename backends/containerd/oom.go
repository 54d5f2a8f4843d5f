package containerd

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// oomScoreFloor returns the lowest oom_score_adj crimux may give a process.
// Lowering it needs CAP_SYS_RESOURCE; without it (some root sandboxes) a spec
// asking for less than crimux's own value makes runc init fail, so such values
// are clamped (containerd calls this restrict_oom_score_adj). Detected, not assumed.
func oomScoreFloor() (int, error) {
	if hasCap(unix.CAP_SYS_RESOURCE) {
		return -1000, nil
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("read own oom_score_adj: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse own oom_score_adj %q: %w", b, err)
	}
	return v, nil
}

func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}

// node is what the node offers, for the spec builder.
func (d *Driver) node() nodeFacts {
	return nodeFacts{cgroups: d.cgroups, oomFloor: d.oomFloor, cgroupDriver: d.opts.CgroupDriver}
}
