#!/usr/bin/env bash
# Runs every test: lint, unit tests with a fake ip, golden logs, the one-file build, and end-to-end tests in
# throw-away network namespaces (the real libcni and podman, with the reference macvlan and host-local plugins)
# against dist/route, started as a runtime starts it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ROUTE_PLUGIN="$PWD/dist/route" exec .venv/bin/tox -e lint,py -- "$@"
