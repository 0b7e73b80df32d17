#!/usr/bin/env python3
"""How long `route reconcile --watch` takes to repair the node after its network changed under running pods.

The bed is the end-to-end tests' throw-away topology (tests/beds/topology.py) with three attachments ADDed as a runtime
calls the plugin (`ip netns exec NODE env -i CNI_... PLUGIN`, prevResult on stdin) and the watcher running as a
node runs it (watch.Watcher, --interval 60: only its ip monitor repairs within the run). Each damage is done
--n times; the time runs from just before the damaging command to the first moment watch.shape_problems()
finds nothing wrong (polled every 20 ms with ip -json, which adds up to ~25 ms).

  tools/heal_bench.py [--plugin dist/route] [--n 15] [--json heal-results.json]

Needs root.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from beds import libcni, topology, watch  # noqa: E402
from beds.topology import SHIM  # noqa: E402

PODS = ("192.168.1.2", "192.168.1.3", "192.168.1.4")
ADDRESSES = ("192.168.0.5/16", "192.168.0.6/16")  # the master's, alternately (a DHCP renewal)


def damages(node):
    """name -> the commands of one damage (run in the node namespace); each leaves a state the next can damage."""
    moved = [0]

    def move_address():
        old, new = ADDRESSES[moved[0] % 2], ADDRESSES[(moved[0] + 1) % 2]
        moved[0] += 1
        return [["ip", "addr", "del", old, "dev", "eno1"], ["ip", "addr", "add", new, "dev", "eno1"]]

    return {
        "ip link del <shim>": lambda: [["ip", "link", "del", SHIM]],
        "ip route flush proto 201": lambda: [["ip", "route", "flush", "proto", "201"]],
        # the routes survive the carrier loss; the master's IPv6 address does not (keep_addr_on_down=0), so
        # its copy has to go from the shim. (The address is given back before each run, untimed.)
        "master down and up": lambda: [["ip", "link", "set", "dev", "eno1", "down"],
                                       ["ip", "link", "set", "dev", "eno1", "up"]],
        "master address changed": move_address,
        "shim set down": lambda: [["ip", "link", "set", "dev", SHIM, "down"]],
        "shim MTU changed": lambda: [["ip", "link", "set", "dev", SHIM, "mtu", "1400"]],
    }


def add(node, route, state_dir, container_id, ip):
    conf = {"cniVersion": "1.0.0", "name": "heal", "type": "route", "master": "eno1", "stateDir": state_dir,
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
                           "ips": [{"interface": 0, "address": ip + "/16"}]}}
    proc = subprocess.run(libcni.plugin_argv(node, route, "ADD", container_id=container_id), input=json.dumps(conf),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ADD {ip} failed: {proc.stdout} {proc.stderr[-500:]}")


def measure(plugin, n):
    results = {}
    with tempfile.TemporaryDirectory() as tmp, topology.Topology() as topo:
        route = os.path.join(tmp, "route")
        libcni.install_route(Path(route), Path(plugin).resolve())
        state_dir = os.path.join(tmp, "state")
        for i, ip in enumerate(PODS):
            add(topo.node, route, state_dir, f"pod{i}", ip)
        with watch.Watcher(topo.node, route, state_dir, "--interval", "60",
                           stderr_path=os.path.join(tmp, "watcher.err")) as watcher:
            if not watcher.wait_for("watching"):
                raise SystemExit(f"the watcher did not start:\n{watcher.output()}")
            for name, damage in damages(topo.node).items():
                times = []
                for _ in range(n):
                    topo.node_exec(["ip", "addr", "replace", "fd00::5/64", "dev", "eno1", "nodad"], check=True)
                    if watch.wait_in_shape(topo.node, PODS) is None:
                        raise SystemExit(f"not in shape before {name}: {watch.shape_problems(topo.node, PODS)}")
                    time.sleep(0.3)  # let the passes caused by the last repair finish
                    commands = damage()
                    started = time.monotonic()
                    for argv in commands:
                        topo.node_exec(argv, check=True)
                    seconds = watch.wait_in_shape(topo.node, PODS, timeout=30)
                    if seconds is None:
                        raise SystemExit(f"{name}: not repaired within 30 s: "
                                         f"{watch.shape_problems(topo.node, PODS)}\n{watcher.output()[-3000:]}")
                    times.append((time.monotonic() - started) * 1000)
                results[name] = times
                print(f"{name:28} median {statistics.median(times):6.0f} ms  p90 {_p90(times):6.0f}  "
                      f"min {min(times):5.0f}  max {max(times):5.0f}  n={len(times)}", flush=True)
            watcher.stop()
    return results


def _p90(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", default=os.path.join(REPO, "dist", "route"))
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"heal_bench: {args.plugin}, n={args.n}, {platform.node()}, kernel {platform.release()}, "
          f"{time.strftime('%Y-%m-%d')}")
    results = measure(args.plugin, args.n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plugin": args.plugin, "n": args.n, "kernel": platform.release(),
                       "date": time.strftime("%Y-%m-%d"), "milliseconds": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
