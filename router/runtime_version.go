package router

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Release is crimux's semantic version and Commit what it was built from
// (`git describe`, set at build time); Version joins them.
var (
	Release = "0.1.0-dev"
	Commit  = ""
)

// Version is crimux's version as a semantic version: the kubelet parses the
// CRI RuntimeVersion as one (a bare commit hash shows as "Unknown" in
// `kubectl get nodes -o wide`), so the commit goes into build metadata.
func Version() string { return semver(Release, Commit) }

// semver is release+commit, the commit made into dot-separated
// identifiers of [0-9A-Za-z-] as semver's build metadata allows.
func semver(release, commit string) string {
	var ids []string
	for _, id := range strings.FieldsFunc(commit, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
	}) {
		if id = strings.Trim(id, "-"); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return release
	}
	return release + "+" + strings.Join(ids, ".")
}

// Version names crimux and what its default handler's driver runs on.
func (r *Router) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       "crimux",
		RuntimeVersion:    Version(),
		RuntimeApiVersion: "v1",
	}, nil
}
