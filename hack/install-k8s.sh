#!/usr/bin/env bash
# Builds kubelet, kube-apiserver and kubectl (Kubernetes $1) and etcd ($2)
# from the Go module proxy into $3, unless that dir has them at these
# versions already. The dir is a cache outside the checkout: `make clean`
# keeps it, and later runs reuse it. About 10-15 minutes cold on 2 cores.
#
# k8s.io/kubernetes is not meant to be required: its go.mod replaces every
# k8s.io staging module with ./staging/src/..., which a consumer ignores. A
# throwaway module that requires it and replaces each staging module with
# its published v0.<minor>.<patch> version builds its commands.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
k8s=$1 etcd=$2 out=$3
mkdir -p "$out"
have() { [ -x "$out/$1" ] && [ "$(cat "$out/$1.version" 2>/dev/null)" = "$2" ]; }

build_k8s() {
  local mod
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' RETURN
  k8s_module "$k8s" "$mod" crimux.local/k8s-build >/dev/null
  for cmd in kubelet kube-apiserver kubectl; do
    have "$cmd" "$k8s" && continue
    echo "building $cmd $k8s from the Go module proxy"
    (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$k8s \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2) \
        -X k8s.io/client-go/pkg/version.gitVersion=$k8s" \
        -o "$out/$cmd.new" "k8s.io/kubernetes/cmd/$cmd")
    mv "$out/$cmd.new" "$out/$cmd"
    echo "$k8s" > "$out/$cmd.version"
  done
}

build_etcd() {
  local mod
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' RETURN
  printf 'module crimux.local/etcd-build\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$etcd" > "$mod/go.mod"
  echo 'package tools' > "$mod/tools.go"
  echo "building etcd $etcd from the Go module proxy"
  (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.new" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.new" "$out/etcd"
  echo "$etcd" > "$out/etcd.version"
}

if ! { have kubelet "$k8s" && have kube-apiserver "$k8s" && have kubectl "$k8s"; }; then
  build_k8s
fi
have etcd "$etcd" || build_etcd
