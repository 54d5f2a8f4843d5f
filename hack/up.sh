#!/usr/bin/env bash
# Starts containerd if nothing answers on its socket, then crimux with its
# built-in defaults, and waits for crimux's socket.
set -euo pipefail
bin=$1 sock=$2 logs=$3
mkdir -p "$logs"
ctrd_sock=/run/containerd/containerd.sock
if ! "$bin/crictl" --config /dev/null --runtime-endpoint "unix://$ctrd_sock" --image-endpoint "unix://$ctrd_sock" version >/dev/null 2>&1 && ! [ -S "$ctrd_sock" ]; then
  echo "starting containerd ($("$bin/containerd" --version | awk '{print $3}'))"
  PATH="$bin:$PATH" nohup "$bin/containerd" >"$logs/containerd.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$ctrd_sock" ] && break; sleep 0.1; done
fi
if [ -S "$sock" ] && "$bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" version >/dev/null 2>&1; then
  echo "crimux already serving on $sock"
  exit 0
fi
echo "starting crimux on $sock (log: $logs/crimux.log)"
PATH="$bin:$PATH" nohup "$bin/crimux" serve >"$logs/crimux.log" 2>&1 &
echo $! > /run/crimux.pid
for _ in $(seq 300); do
  if "$bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" version >/dev/null 2>&1; then
    "$bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" version
    exit 0
  fi
  sleep 0.1
done
echo "crimux did not come up; see $logs/crimux.log" >&2
tail -20 "$logs/crimux.log" >&2
exit 1
