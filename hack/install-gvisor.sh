#!/usr/bin/env bash
# Builds gVisor's runsc and its containerd shim (containerd-shim-runsc-v1) from
# the Go module proxy, statically, into $2, unless they are there at version $1.
#
# The shim raises its own oom_score_adj and fails hard when that is refused,
# which happens where root lacks CAP_SYS_RESOURCE. On such a machine the shim
# is built with that one failure ignored. It can't even be reported: containerd
# 2.x reads `shim start`'s combined stdout and stderr as its bootstrap reply,
# so any text there fails the start with "unsupported protocol".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ver=$1 dir=$2
stamp="$dir/.crimux-gvisor-version"
want="$ver"
cap_sys_resource() { # bit 24 of the effective capability set
  local eff; eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
  (( (16#$eff >> 24) & 1 ))
}
if ! cap_sys_resource; then want="$ver+oom-ignored"; fi
if [ -x "$dir/runsc" ] && [ -x "$dir/containerd-shim-runsc-v1" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "building runsc and containerd-shim-runsc-v1 ($want) from the Go module proxy"
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
module_copy "gvisor.dev/gvisor@$ver" "$work/gvisor"
cd "$work/gvisor"
if ! cap_sys_resource; then
  echo "no CAP_SYS_RESOURCE here: building the shim so that a refused oom_score_adj is ignored"
  f=pkg/shim/v1/manager.go
  grep -q 'failed to set OOM Score on shim' "$f" || { echo "gvisor $ver: $f no longer has the OOM score call; update hack/install-gvisor.sh" >&2; exit 1; }
  sed -i 's|return shim.BootstrapParams{}, fmt.Errorf("failed to set OOM Score on shim: %w", err)|_ = err // crimux: oom_score_adj refused without CAP_SYS_RESOURCE; tolerated|' "$f"
fi
CGO_ENABLED=0 go build -mod=mod -o "$dir/runsc" ./runsc
CGO_ENABLED=0 go build -mod=mod -o "$dir/containerd-shim-runsc-v1" ./shim
echo "$want" > "$stamp"
