#!/usr/bin/env bash
# Builds the DaemonSet's image (deploy/Containerfile) the way CI does: dist/route first (tools/build_dist.py),
# then `podman build`, whose last step is the image's own check that the file runs. Push it to your registry
# and point deploy/base/daemonset.yaml's two `image:` lines at it (docs/install.md).
#   tools/build-image.sh [--base IMAGE] [--tag REGISTRY/route:VERSION]
#     --base  the image to build on: Debian or Ubuntu with python3 >= 3.9 and apt (default: the Containerfile's,
#             docker.io/library/python:3-slim; without a registry, tools/debian-base.sh makes a stand-in)
#     --tag   the image's name (default: the one deploy/base/daemonset.yaml names)
# Needs podman (or set ENGINE=docker), python3 and network access for apt-get inside the build.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-podman}
base=""
tag=$(sed -n 's/^ *image: *\([^ ]*\).*/\1/p' deploy/base/daemonset.yaml | head -1)
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
python3 tools/build_dist.py >&2
# --network host: the build's apt-get needs the network, and a build needs no bridge of its own on this host
"$engine" build --network host ${base:+--build-arg "BASE=$base"} -f deploy/Containerfile -t "$tag" . >&2
echo "$tag"
