#!/usr/bin/env bash
# A stand-in for the image's base (deploy/Containerfile's BASE, python:3-slim from a registry) on a machine that
# reaches no container registry: Debian 12 from Debian's mirror by debootstrap, with python3, iproute2 and
# nftables, imported into podman's storage as IMAGE (default localhost/route-base:bookworm). Needs root.
#   tools/debian-base.sh [IMAGE]        then: tools/build-image.sh --base IMAGE
# The root file system is kept as a tarball ($ROUTE_BASE_CACHE, default /var/cache/route-ci/debian-bookworm.tar):
# a fresh machine makes it (debootstrap, about a minute), a machine that has it only imports it. The end-to-end
# tests also use it as a node's / (tests/beds/image.py). It prints the tarball's path.
set -euo pipefail
image=${1:-localhost/route-base:bookworm}
cache=${ROUTE_BASE_CACHE:-/var/cache/route-ci/debian-bookworm.tar}
if [ ! -s "$cache" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "debian-base: debootstrap bookworm into $work (the cache $cache is not there yet)" >&2
  if ! debootstrap --variant=minbase --include=python3,iproute2,nftables bookworm "$work/root" >"$work/log" 2>&1; then
    tail -20 "$work/log" >&2
    exit 1
  fi
  rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
  mkdir -p "$(dirname "$cache")"
  tar -C "$work/root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
fi
if ! podman image exists "$image"; then
  podman import --quiet --change 'CMD ["/bin/bash"]' "$cache" "$image" >/dev/null
fi
echo "$cache"
