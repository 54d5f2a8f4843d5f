#!/usr/bin/env bash
# Starts containerd if nothing answers on its socket, then crimux with its
# built-in defaults, and waits for crimux's socket.
set -euo pipefail
bin=$1 sock=$2 logs=$3
mkdir -p "$logs"
ctrd_sock=/run/containerd/containerd.sock
# crictl at crimux's socket for both APIs, whatever /etc/crictl.yaml says.
crictl=("$bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock")
# Logs are appended to, never truncated: after a crash the previous run's
# log is the evidence. At each start a log over 50 MiB is rotated (name.1 ..
# name.3 kept); between starts, logrotate with copytruncate can rotate them.
rotate() {
  local f=$1
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((50 << 20)) ]; then
    for i in 2 1; do [ -f "$f.$i" ] && mv -f "$f.$i" "$f.$((i + 1))"; done
    mv -f "$f" "$f.1"
  fi
}
start_log() { rotate "$1"; echo "==== $2 starting at $(date -u +%Y-%m-%dT%H:%M:%SZ) ====" >>"$1"; }
# listening PATH: a process accepts on the unix socket PATH (a socket file left
# by a containerd that died, or by a reboot without /run on tmpfs, is not one).
listening() { awk -v p="$1" '$8 == p && $4 == "00010000" {f = 1} END {exit !f}' /proc/net/unix; }
# containerd makes its state dir 0711 so that a pod's remapped root can reach
# its bundle (pod user namespaces); one made 0700 by something else stays so.
[ -d /run/containerd ] && chmod 0711 /run/containerd
if ! listening "$ctrd_sock"; then
  echo "starting containerd ($("$bin/containerd" --version | awk '{print $3}'))"
  start_log "$logs/containerd.log" containerd
  PATH="$bin:$PATH" nohup "$bin/containerd" >>"$logs/containerd.log" 2>&1 &
  for _ in $(seq 100); do listening "$ctrd_sock" && break; sleep 0.1; done
  listening "$ctrd_sock" || { echo "containerd did not come up; see $logs/containerd.log" >&2; tail -20 "$logs/containerd.log" >&2; exit 1; }
fi
if [ -S "$sock" ] && "${crictl[@]}" version >/dev/null 2>&1; then
  echo "crimux already serving on $sock"
  exit 0
fi
echo "starting crimux on $sock (log: $logs/crimux.log)"
start_log "$logs/crimux.log" crimux
PATH="$bin:$PATH" nohup "$bin/crimux" serve >>"$logs/crimux.log" 2>&1 &
echo $! > /run/crimux.pid
for _ in $(seq 300); do
  if "${crictl[@]}" version >/dev/null 2>&1; then
    "${crictl[@]}" version
    exit 0
  fi
  sleep 0.1
done
echo "crimux did not come up; see $logs/crimux.log" >&2
tail -20 "$logs/crimux.log" >&2
kill "$(cat /run/crimux.pid)" 2>/dev/null || true
rm -f /run/crimux.pid
exit 1
