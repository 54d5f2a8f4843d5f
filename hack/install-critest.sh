#!/usr/bin/env bash
# Builds critest (the CRI validation suite) from sigs.k8s.io/cri-tools $1 into $2
# unless it is there. The module zip has no vendor dir: build from a writable
# copy with -mod=mod.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ver=$1 dir=$2
stamp="$dir/.crimux-critest-version"
if [ -x "$dir/critest" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ver" ]; then
  exit 0
fi
echo "building critest $ver from the Go module proxy"
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
module_copy "sigs.k8s.io/cri-tools@$ver" "$work/cri-tools"
(cd "$work/cri-tools" && go test -mod=mod -c -o "$dir/critest" ./cmd/critest)
echo "$ver" > "$stamp"
