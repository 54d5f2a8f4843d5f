#!/usr/bin/env bash
# Builds crictl from sigs.k8s.io/cri-tools $1 into $2 unless it is there.
# The module zip has no vendor dir, so it builds from a writable copy with -mod=mod.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ver=$1 dir=$2
if [ -x "$dir/crictl" ] && "$dir/crictl" --version 2>/dev/null | grep -q "${ver}"; then
  exit 0
fi
echo "building crictl $ver from the Go module proxy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
module_copy "sigs.k8s.io/cri-tools@$ver" "$work/cri-tools"
(cd "$work/cri-tools" && go build -mod=mod -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$ver" -o "$dir/crictl" ./cmd/crictl)
