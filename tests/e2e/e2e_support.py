"""Plain helpers for the e2e tests (imported by conftest.py and the tests).

Kept out of conftest.py so tests never `import conftest` (tests/unit has one too).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import netns  # noqa: E402  (tests/netns.py)
from netns import REFERENCE_PLUGINS, DriverResult, run_driver  # noqa: E402,F401  (re-exported)

MASTER = "eno1"
SHIM = "eno1.host"
NODE_IP = netns.NODE_V4
LAN_IP = netns.LAN_V4
PROTO = "201"  # the protocol number of the plugin's routes


# --------------------------------------------------------------------------
# plain helpers
# --------------------------------------------------------------------------

def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root (network namespaces)", pytrace=False)


def ok(res: DriverResult, what: str = "operation") -> Any:
    """Assert a driver call succeeded; its result."""
    rc, out, err = res
    assert rc == 0, f"{what} failed: rc={rc} stdout={out}\nstderr:\n{err}"
    return out


def failed(res: DriverResult, what: str = "operation") -> dict[str, Any]:
    """Assert the driver reported a CNI error with a non-zero code; the error."""
    rc, out, err = res
    assert rc != 0, f"{what} unexpectedly succeeded: {out}\nstderr:\n{err}"
    assert isinstance(out, dict) and "code" in out, \
        f"{what}: no CNI error JSON on stdout ({out!r})\nstderr:\n{err}"
    assert out["code"] != 0, \
        f"{what} failed without a proper CNI error code (crash?): {out}\nstderr:\n{err}"
    return out


def add_pod(cni: Cni, conf, container_id: str | None = None) -> tuple[str, Any]:
    """A new pod namespace, ADDed through the chain `conf`; (pod name, result)."""
    pod, path = cni.topo.add_pod()
    return pod, ok(cni.add(conf, path, container_id), f"ADD {pod}")


def node_sysctl(topo: netns.Topology, key: str, value) -> None:
    assert topo.node_exec(["sysctl", "-qw", f"{key}={value}"]).returncode == 0


def pod_ips(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """Bare addresses of `ifname` (with a sandbox) from a CNI result of any
    version (0.3.x/0.4.0/1.0.0 share the interfaces/ips layout)."""
    ifaces = result.get("interfaces") or []
    idx = {i for i, itf in enumerate(ifaces)
           if itf.get("name") == ifname and itf.get("sandbox")}
    ips = []
    for ip in result.get("ips") or []:
        if ip.get("interface") in idx:
            ips.append(ip["address"].split("/")[0])
    return ips


def ip_json(topo: netns.Topology, argv: list[str]) -> Any | None:
    proc = topo.node_exec(["ip", "-json"] + argv)
    if proc.returncode != 0:
        return None
    text = proc.stdout.strip()
    return json.loads(text) if text else []


# --------------------------------------------------------------------------
# the Cni helper object handed to tests
# --------------------------------------------------------------------------

class Cni:
    def __init__(self, topo: netns.Topology, driver: str, cni_path: str, cache_dir: Path):
        self.topo = topo
        self.driver = driver
        self.cni_path = cni_path
        self.cache_dir = cache_dir

    @staticmethod
    def default_container_id(pod: str) -> str:
        return "ctr-" + os.path.basename(pod)

    def run(self, cmd: str, conflist, pod: str, container_id: str | None = None,
            ifname: str = "eth0") -> DriverResult:
        cid = container_id or self.default_container_id(pod)
        return run_driver(self.topo, self.driver, self.cni_path, str(self.cache_dir),
                          cmd, conflist, pod, cid, ifname)

    def add(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("add", conflist, pod, container_id, ifname)

    def check(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("check", conflist, pod, container_id, ifname)

    def delete(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("del", conflist, pod, container_id, ifname)

    # ---- host (node netns) state, read back with `ip -json` ----
    def shim_link(self, dev: str = SHIM) -> dict[str, Any] | None:
        links = ip_json(self.topo, ["-d", "link", "show", "dev", dev])
        return links[0] if links else None

    def node_links(self) -> list[dict[str, Any]]:
        return ip_json(self.topo, ["-d", "link", "show"]) or []

    def node_routes(self) -> list[dict[str, Any]]:
        routes = []
        for fam in ("-4", "-6"):
            routes += ip_json(self.topo, [fam, "route", "show", "table", "main"]) or []
        return routes

    def shim_routes(self, dev: str = SHIM) -> list[dict[str, Any]]:
        return [r for r in self.node_routes() if r.get("dev") == dev]

    def ping_from_node(self, ip: str) -> bool:
        return self.topo.node_exec(["ping", "-c", "1", "-W", "2", ip]).returncode == 0

    def ping_from_pod(self, pod: str, ip: str) -> bool:
        name = os.path.basename(pod)
        return self.topo.pod_exec(name, ["ping", "-c", "1", "-W", "2", ip]).returncode == 0
