#!/usr/bin/env bash
# Builds runc $1 (github.com/opencontainers/runc) into $2 unless it is there.
# Debian's runc 1.1.5 has no idmapped mounts; runc >= 1.2 does, which pod user
# namespaces need. The module zip has no vendor dir, so it builds with
# -mod=mod from a writable copy; seccomp support needs libseccomp-dev (cgo).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ver=$1 dir=$2
if [ -x "$dir/runc" ] && "$dir/runc" --version 2>/dev/null | grep -q "^runc version ${ver#v}$"; then
  exit 0
fi
echo "building runc $ver from the Go module proxy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
module_copy "github.com/opencontainers/runc@$ver" "$work/runc"
(cd "$work/runc" && CGO_ENABLED=1 go build -mod=mod -trimpath -tags "seccomp urfave_cli_no_docs" \
  -ldflags "-X main.version=${ver#v} -X main.gitCommit=module-proxy" -o "$work/runc.bin" .)
install -m 0755 "$work/runc.bin" "$dir/runc"
"$dir/runc" --version | head -1
