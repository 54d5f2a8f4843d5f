# Shared by the install scripts; source it.

# module_copy MODULE@VERSION DIR: a writable copy of a module from the Go
# module proxy in DIR (module zips are read-only and carry no vendor dir, so
# their commands are built from such a copy with -mod=mod).
module_copy() {
  local src
  src=$(GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$src" ] || { echo "go mod download $1 failed" >&2; return 1; }
  cp -r "$src" "$2"
  chmod -R u+w "$2"
}

# k8s_module K8S_VERSION DIR NAME: a throwaway module NAME in DIR that
# requires k8s.io/kubernetes K8S_VERSION and replaces each of its staging
# modules (which its go.mod points at ./staging/src, ignored by a consumer)
# with the published v0.<minor>.<patch>, so its commands and tests build
# from the Go module proxy. Prints the path of kubernetes' own go.mod.
k8s_module() {
  local k8s=$1 dir=$2 name=$3 gomod stage
  gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$gomod" ] || { echo "go mod download k8s.io/kubernetes@$k8s failed" >&2; return 1; }
  stage="v0.${k8s#v1.}"
  {
    echo "module $name"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $k8s"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\t\1 => \1 '"$stage"'#p' "$gomod"
    echo ")"
  } > "$dir/go.mod"
  echo 'package tools' > "$dir/tools.go"
  echo "$gomod"
}
