#!/usr/bin/env bash
# Builds Kubernetes $1's node e2e suite (e2e_node.test), agnhost (and its
# test certificate), nnp (the nonewprivs image's program) and the ginkgo CLI
# the suite's go.mod names, from the Go module proxy, into $2, unless that
# dir has them at this version already. A cache outside the
# checkout like install-k8s.sh's (same throwaway-module trick: require
# k8s.io/kubernetes and replace each staging module with its published
# v0.<minor>.<patch>). About 3 minutes with a warm module cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
k8s=$1 out=$2
mkdir -p "$out"
have() { [ -x "$out/$1" ] && [ "$(cat "$out/$1.version" 2>/dev/null)" = "$k8s" ]; }
have e2e_node.test && have agnhost && have nnp && have ginkgo && [ -f "$out/localhost.key" ] && exit 0

mod=$(mktemp -d)
trap 'rm -rf "$mod"' EXIT
gomod=$(k8s_module "$k8s" "$mod" crimux.local/node-e2e-build)
ginkgo=$(sed -n 's#^[[:space:]]*github.com/onsi/ginkgo/v2 \(v[^ ]*\).*#\1#p' "$gomod" | head -1)
cd "$mod"
export GOFLAGS=-mod=mod CGO_ENABLED=0
# The test-only requirements of the suite and agnhost's imports.
go get -t "k8s.io/kubernetes/test/e2e_node@$k8s" "k8s.io/kubernetes/test/images/agnhost@$k8s" "github.com/onsi/ginkgo/v2/ginkgo@$ginkgo" >/dev/null
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
if ! have e2e_node.test; then
  echo "building e2e_node.test $k8s from the Go module proxy"
  go test -c -trimpath -ldflags "$ldflags" -o "$out/e2e_node.test.new" k8s.io/kubernetes/test/e2e_node
  mv "$out/e2e_node.test.new" "$out/e2e_node.test"; echo "$k8s" > "$out/e2e_node.test.version"
fi
if ! have agnhost; then
  echo "building agnhost $k8s"
  go build -trimpath -ldflags "-s -w" -o "$out/agnhost.new" k8s.io/kubernetes/test/images/agnhost
  mv "$out/agnhost.new" "$out/agnhost"; echo "$k8s" > "$out/agnhost.version"
fi
if ! have nnp; then
  # The nonewprivs image's program: it prints its effective uid.
  echo "building nnp (nonewprivs) $k8s"
  go build -trimpath -ldflags "-s -w" -o "$out/nnp.new" k8s.io/kubernetes/test/images/nonewprivs
  mv "$out/nnp.new" "$out/nnp"; echo "$k8s" > "$out/nnp.version"
fi
# agnhost's TLS test certificate and key (upstream's image has them at /).
src=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
cp "$src/test/images/agnhost/porter/localhost.crt" "$src/test/images/agnhost/porter/localhost.key" "$out/"
chmod 644 "$out/localhost.crt" "$out/localhost.key"
if ! have ginkgo; then
  echo "building ginkgo $ginkgo"
  go build -trimpath -ldflags "-s -w" -o "$out/ginkgo.new" github.com/onsi/ginkgo/v2/ginkgo
  mv "$out/ginkgo.new" "$out/ginkgo"; echo "$k8s" > "$out/ginkgo.version"
fi
