"""`route reconcile --watch` run as a node runs it, and whether the node is in shape (tests/e2e/test_self_healing.py,
tests/e2e/test_daemonset.py, tools/heal_bench.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .runtime import NODE_PATH, run, runtime_env
from .topology import MASTER, PROTO, SHIM


class Watcher:
    """`route reconcile --watch` run as a node runs it: in the node namespace, with a runtime-like environment
    (`ip netns exec NODE env -i PATH=... ROUTE reconcile --watch --state-dir DIR OPTIONS`), stderr to a file.

    *route* is an executable a node can run (make_cni_path's `route`: the one-file build, or the source tree's
    wrapper). `command` replaces the whole command (the DaemonSet's), with `path` as its PATH."""

    def __init__(self, node: str, route, state_dir, *options: str, stderr_path, command=None,
                 path: str = NODE_PATH) -> None:
        command = command or [str(route), "reconcile", "--watch", "--state-dir", str(state_dir), *options]
        env = runtime_env(PATH=path)
        self.node = node
        self.stderr_path = Path(stderr_path)
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(["ip", "netns", "exec", node, "env", "-i",
                                          *[f"{k}={v}" for k, v in env.items()], *command],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.pid = self.proc.pid  # ip netns exec and env exec it: this pid is the watcher itself

    def output(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> bool:
        """Whether `text` appears in its stderr within `timeout` s (False at once if it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.02)
        return False

    def monitor_pids(self) -> list[int]:
        """The pids of its `ip ... monitor` children."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid and b"monitor" in cmdline:
                found.append(int(entry))
        return found

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; (exit status or None if still running after `timeout`, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout), time.monotonic() - started
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def shape_problems(node: str, ips: Iterable[str], shim: str = SHIM, master: str = MASTER) -> list[str]:
    """What keeps the node's pods cut off from it, read with ip -json: the shim missing, down, not a bridge
    macvlan on master, with another MTU or other global addresses than master, or a pod IP without its
    proto 201 route on the shim. Empty when the node is in shape."""
    links = {link["ifname"]: link for link in
             json.loads(run(["ip", "-n", node, "-json", "-d", "addr", "show"]).stdout or "[]")}
    if shim not in links or master not in links:
        return [f"{name} missing" for name in (shim, master) if name not in links]
    s, m = links[shim], links[master]
    found = [] if "UP" in s["flags"] else [f"{shim} down"]
    info = s.get("linkinfo", {})
    if (info.get("info_kind"), info.get("info_data", {}).get("mode"), s.get("link")) != ("macvlan", "bridge", master):
        found.append(f"{shim} is not a bridge macvlan on {master}")
    if s["mtu"] != m["mtu"]:
        found.append(f"{shim} mtu {s['mtu']}, {master} {m['mtu']}")

    def addresses(link):
        return sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") == "global")

    if addresses(s) != addresses(m):
        found.append(f"{shim} has {addresses(s)}, {master} {addresses(m)}")
    routed = set()
    for family in ("-4", "-6"):
        routed |= {r["dst"] for r in json.loads(run(["ip", "-n", node, "-json", family, "route", "show", "proto",
                                                    PROTO, "dev", shim], check=False).stdout or "[]")}
    found += [f"no route to {ip} on {shim}" for ip in ips if ip not in routed]
    return found


def wait_in_shape(node: str, ips: Iterable[str], timeout: float = 10.0, **names: str) -> float | None:
    """Seconds until shape_problems() is empty, polled every 20 ms; None if not within `timeout`."""
    ips = list(ips)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not shape_problems(node, ips, **names):
            return time.monotonic() - started
        time.sleep(0.02)
    return None
