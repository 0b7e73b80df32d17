#!/usr/bin/env bash
# Runs every test: lint, unit tests with a fake ip, golden logs, and end-to-end tests in throw-away network
# namespaces through the real libcni with the reference macvlan and host-local plugins. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec .venv/bin/tox -e lint,py -- "$@"
