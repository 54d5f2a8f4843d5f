#!/usr/bin/env bash
# Installs the Debian packages crimux needs, when missing.
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/bin/busybox ] || need+=(busybox)   # test images are built from Debian's dynamic busybox
command -v ip >/dev/null || need+=(iproute2)
command -v ldd >/dev/null || need+=(libc-bin)
# runc is built from the module proxy with seccomp (cgo): gcc, pkg-config, libseccomp-dev.
command -v gcc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
