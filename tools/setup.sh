#!/usr/bin/env bash
# Installs everything the demo and the tests need, on Debian 12 as root, and builds what a node runs.
# Safe to run again.
#   apt: iproute2, ping, nftables, util-linux (nsenter), the reference CNI plugins, Go and libcni's source
#        (to build tests/cnidriver), podman + runc + buildah with busybox-static and catatonit (the podman tests),
#        containerd (the CRI tests), debootstrap (the DaemonSet image's stand-in base), python3-prometheus-client
#        (the watcher's metrics, served by the node's python3 in the e2e tests; the plugin does not need it)
#   pip: a virtualenv in .venv with tox, pytest, hypothesis, ruff, sh, jsonschema, grpcio and prometheus-client
#        (for the tests)
#   dist/route: the one-file build (tools/build_dist.py), compiled for the python3 a runtime finds on a node
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
packages=(iproute2 iputils-ping nftables util-linux containernetworking-plugins golang-go
          golang-github-appc-cni-dev golang-github-vishvananda-netlink-dev python3 python3-venv
          podman runc buildah busybox-static catatonit containerd debootstrap python3-prometheus-client)
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
node_python=$(PATH=$NODE_PATH command -v python3)
.venv/bin/python tools/build_dist.py --python "$node_python"
echo "setup: ready ($(.venv/bin/python --version), node python3 $node_python, $(ip -V), $(go version | cut -d' ' -f3))"
