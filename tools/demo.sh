#!/usr/bin/env bash
# The main job, end to end, on throw-away network namespaces: builds the libcni driver, runs the chain of
# net.d/00-default.conflist (macvlan + host-local, then route) for one pod, shows the result, the node's routes,
# the eno1.host shim, pings, CHECK, the replayable log and DEL, then deletes everything it made. Needs root.
# Run tools/setup.sh once first (it makes .venv); this script does not install anything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "demo: .venv/bin/python is missing; run tools/setup.sh first" >&2
  exit 2
fi
exec .venv/bin/python tools/demo.py "$@"
