#!/usr/bin/env bash
# The main job, end to end, on throw-away network namespaces: builds the libcni driver, installs the one-file
# build dist/route with `route install` into a CNI bin dir, runs the chain of net.d/00-default.conflist
# (macvlan + host-local, then route) for one pod with a runtime's environment, shows the result, the node's
# routes, the eno1.host shim, pings, CHECK, the replayable log and DEL, then deletes everything it made.
# Needs root. Run tools/setup.sh once first (it builds dist/route); this script installs nothing on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tools/demo.py "$@"
