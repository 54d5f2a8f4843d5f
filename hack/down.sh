#!/usr/bin/env bash
# Stops the crimux `make up` started. Pods keep running; a new crimux adopts them.
set -euo pipefail
if [ -f /run/crimux.pid ]; then
  kill "$(cat /run/crimux.pid)" 2>/dev/null || true
  rm -f /run/crimux.pid
fi
