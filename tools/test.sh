#!/usr/bin/env bash
# Runs every test: lint, unit tests with a fake ip, golden logs, the one-file build, and end-to-end tests in
# throw-away network namespaces (the real libcni and podman, with the reference macvlan and host-local plugins)
# against dist/route, started as a runtime starts it. Needs root.
# Then the end-to-end tests again with the node's python3 being the oldest and the newest Python the plugin
# supports that this machine has (tools/pythons.py), each unless it is the system python3's minor version.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ROUTE_PLUGIN="$PWD/dist/route" .venv/bin/tox -e lint,py -- "$@"
node_minor=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
             python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
while read -r version python; do
  if [ "${version%.*}" != "$node_minor" ]; then
    echo "test.sh: the end-to-end tests again, with python $version ($python) as the node's python3"
    ROUTE_PLUGIN="$PWD/dist/route" ROUTE_NODE_PYTHON="$python" .venv/bin/tox -e py -- tests/e2e
  fi
done < <(.venv/bin/python tools/pythons.py --supported --ends)
