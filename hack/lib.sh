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
