#!/usr/bin/env bash
# Installs everything the demo and the tests need, on Debian 12 as root. Safe to run again.
#   apt: iproute2, ping, nftables, the reference CNI plugins, Go and libcni's source (to build tests/cnidriver)
#   pip: a virtualenv in .venv with tox, pytest, hypothesis, ruff, sh and jsonschema
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(iproute2 iputils-ping nftables containernetworking-plugins golang-go golang-github-appc-cni-dev
          golang-github-vishvananda-netlink-dev python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/tox ] || [ requirements-dev.txt -nt .venv/.installed ]; then
  echo "setup: python3 -m venv .venv; pip install -r requirements-dev.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  touch .venv/.installed
fi
echo "setup: ready ($(.venv/bin/python --version), $(ip -V), $(go version | cut -d' ' -f3))"
