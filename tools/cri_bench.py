#!/usr/bin/env python3
"""How much of a pod sandbox's start route takes, on Kubernetes' own path: RunPodSandbox through containerd's CRI.

The bed is the CRI tests' (tests/beds/cri.py): Debian's containerd in a throw-away node netns, its pause image
made locally, the pods' network macvlan + host-local, once without route and once with route chained after them
(the one-file build, put in the bin dir by `route install`). Each RunPodSandbox is timed as the kubelet sees it,
from the call to the answer (the sandbox ready, its network set up); the sandbox is then stopped and removed,
untimed, while one more sandbox runs throughout (so that route's shim is there, as on a node with pods).
Route's share is (median with route - median without) / median with route.

  tools/cri_bench.py [--plugin dist/route] [--n 20] [--json cri-results.json]

Needs root and grpcio (requirements-dev.txt).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from beds import cri, libcni, topology  # noqa: E402

WARMUP = 2  # the first sandboxes also make the shim and load the image


def start_times(plugin, with_route, n):
    """Seconds of each of `n` RunPodSandbox calls, after WARMUP untimed ones."""
    times = []
    with tempfile.TemporaryDirectory(prefix="cri-bench-") as root, topology.Topology() as topo, \
            cri.ContainerdBed(Path(root) / "containerd", topo, plugin) as bed:
        bed.network(with_route=with_route)
        bed.run_sandbox("bench-anchor")  # a node has pods already: the shim stays between the timed ones
        for i in range(WARMUP + n):
            began = time.perf_counter()
            sandbox = bed.run_sandbox(f"bench-{i}")
            took = time.perf_counter() - began
            bed.remove_sandbox(sandbox)
            if i >= WARMUP:
                times.append(took)
    return times


def summary(times):
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
            "min_ms": ordered[0] * 1000}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default=os.path.join(REPO, "dist", "route"), help="the one-file build")
    parser.add_argument("--n", type=int, default=20, help="timed sandboxes of each kind")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    plugin = Path(args.plugin).resolve()
    if not libcni.is_one_file_build(plugin):
        parser.error(f"{plugin} is not the one-file build (python3 tools/build_dist.py)")
    without = summary(start_times(plugin, False, args.n))
    with_route = summary(start_times(plugin, True, args.n))
    share = (with_route["median_ms"] - without["median_ms"]) / with_route["median_ms"]
    print(f"cri_bench: {plugin}, n={args.n}, {platform.node()}, kernel {platform.release()}")
    for label, figures in (("macvlan + host-local", without), ("macvlan + host-local + route", with_route)):
        print(f"  RunPodSandbox, {label:30} median {figures['median_ms']:6.1f} ms  p90 {figures['p90_ms']:6.1f} ms"
              f"  min {figures['min_ms']:6.1f} ms")
    print(f"  route's share of a sandbox start: {share:.0%} (median with route - median without, over with)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plugin": str(plugin), "n": args.n, "kernel": platform.release(), "without_route": without,
                       "with_route": with_route, "route_share": share}, f, indent=2)


if __name__ == "__main__":
    main()
