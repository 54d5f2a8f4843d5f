#!/usr/bin/env bash
# Writes what a node needs on first install, never overwriting an operator's files:
# a CNI network when none exists, crictl's endpoint, the registry hosts dir.
set -euo pipefail
conf_dir=/etc/cni/net.d
if ! ls "$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json >/dev/null 2>&1; then
  mkdir -p "$conf_dir"
  cat > "$conf_dir/10-crimux.conflist" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crimux",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crimux0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  echo "wrote $conf_dir/10-crimux.conflist"
fi
mkdir -p /etc/crimux/certs.d
if [ ! -e /etc/crictl.yaml ]; then
  printf 'runtime-endpoint: unix:///run/crimux/crimux.sock\nimage-endpoint: unix:///run/crimux/crimux.sock\ntimeout: 60\n' > /etc/crictl.yaml
  echo "wrote /etc/crictl.yaml"
fi
