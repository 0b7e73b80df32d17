#!/usr/bin/env python3
"""How long `route reconcile --watch` takes to repair the node after its network changed under running pods.

The bed is the end-to-end tests' throw-away topology (tests/beds/topology.py) with three attachments ADDed as a runtime
calls the plugin (`ip netns exec NODE env -i CNI_... PLUGIN`, prevResult on stdin) and the watcher running as a
node runs it (watch.Watcher, --interval 60: only its ip monitor repairs within the run). Each damage is done
--n times; the time runs from just before the damaging command to the first moment watch.shape_problems()
finds nothing wrong (polled every 20 ms with ip -json, which adds up to ~25 ms).

With --pods N, what the watcher costs a node of N running pods (half of them Multus pods: eth0 a veth to the
node as ptp makes it, net1 a macvlan with route): the wall time of a pod's ADD (a Multus pod's, then its DEL,
--n times) without the watcher and while it runs (target: at most WATCHER_TARGET times), and how long a pass
with nothing to repair holds the shim's lock (target: LOCK_TARGET_MS), seen from outside by a thread that tries
the lock every LOCK_POLL s while `ip route add/del` of an address no pod uses wakes the watcher.

  tools/heal_bench.py [--plugin dist/route] [--n 15] [--pods 110] [--json heal-results.json]

Needs root.
"""
import argparse
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from beds import libcni, runtime, topology, watch  # noqa: E402
from beds.topology import SHIM  # noqa: E402

PODS = ("192.168.1.2", "192.168.1.3", "192.168.1.4")
ADDRESSES = ("192.168.0.5/16", "192.168.0.6/16")  # the master's, alternately (a DHCP renewal)
WATCHER_TARGET = 1.5  # an ADD while the watcher runs / without it
LOCK_TARGET_MS = 100  # the shim's lock held by a pass with nothing to repair
LOCK_POLL = 0.0005  # seconds between two tries of the lock
CLUSTER_GW = "10.244.0.1"  # on the node's side of every pod's veth, as the reference ptp plugin puts it


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


def add(node, route, state_dir, container_id, ip, pod=None, ifname="eth0", verb="ADD"):
    """One call of the plugin as a runtime makes it, for a pod at `ip` on `ifname` (`pod`: its namespace path,
    else the node's stands in, as the plugin enters none for that pod)."""
    conf = {"cniVersion": "1.0.0", "name": "heal", "type": "route", "master": "eno1", "stateDir": state_dir,
            "prevResult": {"cniVersion": "1.0.0",
                           "interfaces": [{"name": ifname, "sandbox": pod or "/var/run/netns/x"}],
                           "ips": [{"interface": 0, "address": ip + "/16"}]}}
    argv = libcni.plugin_argv(node, route, verb, netns=pod, container_id=container_id, ifname=ifname)
    proc = subprocess.run(argv, input=json.dumps(conf), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{verb} {ip} failed: {proc.stdout} {proc.stderr[-500:]}")


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


def make_pod(topo, number, multus):
    """A running pod's namespace: net1 a macvlan on the node's eno1 at 192.168.1.<n> (2.<n> for a pod of one
    interface); a Multus pod also has eth0, a veth to the node (10.244.0.<n>/24, default via CLUSTER_GW, the
    node's side vp<n> with CLUSTER_GW/32 and the route to the pod, as ptp makes them). Returns (path, net1's IP)."""
    pod, path = topo.add_pod()
    run = runtime.run
    ip = f"192.168.{1 if multus else 2}.{number}"
    run(["ip", "-n", topo.node, "link", "add", f"mv{number}", "link", "eno1", "type", "macvlan", "mode", "bridge"])
    run(["ip", "-n", topo.node, "link", "set", f"mv{number}", "netns", pod, "name", "net1"])
    run(["ip", "-n", pod, "addr", "add", f"{ip}/16", "dev", "net1"])
    run(["ip", "-n", pod, "link", "set", "net1", "up"])
    if multus:
        cluster = f"10.244.0.{number}"
        run(["ip", "-n", topo.node, "link", "add", f"vp{number}", "type", "veth", "peer", "name", "eth0", "netns",
             pod])
        run(["ip", "-n", topo.node, "addr", "add", f"{CLUSTER_GW}/32", "dev", f"vp{number}"])
        run(["ip", "-n", topo.node, "link", "set", f"vp{number}", "up"])
        run(["ip", "-n", topo.node, "route", "add", f"{cluster}/32", "dev", f"vp{number}"])
        run(["ip", "-n", pod, "addr", "add", f"{cluster}/24", "dev", "eth0"])
        run(["ip", "-n", pod, "link", "set", "eth0", "up"])
        run(["ip", "-n", pod, "route", "add", "default", "via", CLUSTER_GW, "dev", "eth0"])
    return path, ip


class LockWatch:
    """A thread that tries the shim's lock every LOCK_POLL s (and lets it go at once): the longest stretch it found
    the lock held, in ms, since the last reset()."""

    def __init__(self, path):
        self.path, self.longest, self.busy_since, self.holds = path, 0.0, None, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def reset(self):
        self.longest, self.holds = 0.0, 0

    def wait_for_hold(self, timeout):
        """Wait until a hold has begun and ended since reset() (at most `timeout` s); the longest, in ms."""
        deadline = time.monotonic() + timeout
        while (not self.holds or self.busy_since is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.longest

    def _run(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while not self.done.is_set():
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self.busy_since = self.busy_since or time.monotonic()
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    if self.busy_since is not None:
                        self.longest = max(self.longest, (time.monotonic() - self.busy_since) * 1000)
                        self.busy_since = None
                        self.holds += 1
                time.sleep(LOCK_POLL)
        finally:
            os.close(fd)

    def stop(self):
        self.done.set()
        self.thread.join()


def watcher_cost(plugin, pods, n):
    """What the watcher costs a node of `pods` running pods (see the module's doc): {measure: [values]}."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp, topology.Topology() as topo:
        route = os.path.join(tmp, "route")
        libcni.install_route(Path(route), Path(plugin).resolve())
        state_dir = os.path.join(tmp, "state")
        started = time.monotonic()
        for number in range(2, pods + 2):
            multus = number % 2 == 0
            path, ip = make_pod(topo, number, multus)
            add(topo.node, route, state_dir, f"pod{number}", ip, pod=path, ifname="net1")
        print(f"{pods} pods ADDed ({pods // 2 + pods % 2} Multus pods) in {time.monotonic() - started:.0f} s",
              flush=True)
        measured, ip = make_pod(topo, pods + 2, True)

        def adds():
            times = []
            for _ in range(n):
                started = time.monotonic()
                add(topo.node, route, state_dir, "measured", ip, pod=measured, ifname="net1")
                times.append((time.monotonic() - started) * 1000)
                add(topo.node, route, state_dir, "measured", ip, pod=measured, ifname="net1", verb="DEL")
                time.sleep(0.5)
            return times

        results["ADD without the watcher (ms)"] = adds()
        lock = LockWatch(os.path.join(state_dir, "locks", f"shim.{SHIM}"))
        with watch.Watcher(topo.node, route, state_dir, "--interval", "60",
                           stderr_path=os.path.join(tmp, "watcher.err")) as watcher:
            if not watcher.wait_for("watching", timeout=600):
                raise SystemExit(f"the watcher did not start:\n{watcher.output()}")
            results["ADD while the watcher runs (ms)"] = adds()
            holds = []
            for _ in range(n):
                time.sleep(1.0)  # the passes of what came before are over
                lock.reset()
                topo.node_exec(["ip", "route", "add", "10.99.0.0/24", "dev", "lo"], check=True)
                holds.append(lock.wait_for_hold(120))  # the pass it woke (after SETTLE)
                topo.node_exec(["ip", "route", "del", "10.99.0.0/24", "dev", "lo"], check=True)
            results["lock held by a pass with nothing to repair (ms)"] = holds
            watcher.stop()
        lock.stop()
    for name, values in results.items():
        print(f"{name:50} median {statistics.median(values):7.1f}  p90 {_p90(values):7.1f}  max {max(values):7.1f}  "
              f"n={len(values)}", flush=True)
    ratio = statistics.median(results["ADD while the watcher runs (ms)"]) / statistics.median(
        results["ADD without the watcher (ms)"])
    hold = statistics.median(results["lock held by a pass with nothing to repair (ms)"])
    print(f"ADD with / without the watcher: {ratio:.2f}x (target <= {WATCHER_TARGET}x: "
          f"{'met' if ratio <= WATCHER_TARGET else 'MISSED'}); lock held by a pass: {hold:.0f} ms "
          f"(target <= {LOCK_TARGET_MS} ms: {'met' if hold <= LOCK_TARGET_MS else 'MISSED'})")
    return results


def _p90(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", default=os.path.join(REPO, "dist", "route"))
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--pods", type=int, help="measure what the watcher costs a node of this many pods instead")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"heal_bench: {args.plugin}, n={args.n}, {platform.node()}, kernel {platform.release()}, "
          f"{time.strftime('%Y-%m-%d')}")
    results = watcher_cost(args.plugin, args.pods, args.n) if args.pods else measure(args.plugin, args.n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plugin": args.plugin, "n": args.n, "pods": args.pods, "kernel": platform.release(),
                       "date": time.strftime("%Y-%m-%d"), "milliseconds": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
