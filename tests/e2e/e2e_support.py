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
# A node whose own address is on a second NIC (move_node_address): eth1, towards its default gateway.
SECOND_NIC = "eth1"
ELSEWHERE_V4, ELSEWHERE_GW4 = "10.20.0.5", "10.20.0.1"
ELSEWHERE_V6, ELSEWHERE_GW6 = "fd20::5", "fd20::1"


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


def move_node_address(topo: netns.Topology, families=(4, 6)) -> str:
    """The layout of a dedicated macvlan NIC: the master loses its global addresses of `families`; the node's
    address is on a second NIC (eth1: 10.20.0.5/24, fd20::5/64) towards an uplink namespace (10.20.0.1,
    fd20::1), which is the node's default gateway. Returns the uplink namespace."""
    for family in families:
        assert topo.node_exec(["ip", f"-{family}", "addr", "flush", "dev", MASTER, "scope", "global"]).returncode == 0
    uplink = topo.add_uplink(SECOND_NIC, [f"{ELSEWHERE_V4}/24", f"{ELSEWHERE_V6}/64"],
                             [f"{ELSEWHERE_GW4}/24", f"{ELSEWHERE_GW6}/64"])
    for gateway in (ELSEWHERE_GW4, ELSEWHERE_GW6):
        assert topo.node_exec(["ip", "route", "add", "default", "via", gateway]).returncode == 0
    return uplink


# --------------------------------------------------------------------------
# services: an echo server, a client, kube-proxy's translation
# --------------------------------------------------------------------------

# Answers "echo <what came> from <peer address>", so a test sees whether the node masqueraded the request.
SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); s.settimeout(60)
print("ready", flush=True)
while True:
    try:
        c, peer = s.accept()
    except socket.timeout:
        break
    c.sendall(b"echo " + c.recv(100) + b" from " + peer[0].encode()); c.close()
"""
CLIENT = r"""
import socket, sys
source = (sys.argv[3], 0) if len(sys.argv) > 3 else None
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3, source_address=source)
s.sendall(b"hello"); print(s.recv(200).decode())
"""


def request(ns: str, address: str, port: int, source: str | None = None) -> str | None:
    """What the echo server at address:port answered a client in namespace `ns` (from `source`), or None."""
    argv = [sys.executable, "-c", CLIENT, address, str(port), *([source] if source else [])]
    proc = netns.ns_exec(os.path.basename(ns), argv, timeout=20)
    return proc.stdout.strip() if proc.returncode == 0 else None


def kube_proxy(topo: netns.Topology, services: dict[str, tuple[str, int]], tool: str = "nft") -> None:
    """A DNAT like kube-proxy's: {cluster_ip: (backend_ip, backend_port)} on port 80, of either family, as the
    nftables mode writes it (`tool="nft"`) or as the iptables mode does (`tool="iptables"`)."""
    if tool == "nft":
        rules = ""
        for vip, (ip, port) in services.items():
            proto = "ip6" if ":" in vip else "ip"
            rules += f"{proto} daddr {vip} tcp dport 80 dnat {proto} to {_endpoint(ip, port)}\n"
        chain = f"chain prerouting {{ type nat hook prerouting priority dstnat;\n{rules} }}"
        assert topo.node_exec(["nft", "-f", "-"], input=f"table inet kubeproxy {{\n{chain}\n}}\n").returncode == 0
        return
    for vip, (ip, port) in services.items():
        command = "ip6tables" if ":" in vip else "iptables"
        assert topo.node_exec([command, "-t", "nat", "-A", "PREROUTING", "-d", vip, "-p", "tcp", "--dport", "80",
                               "-j", "DNAT", "--to-destination", _endpoint(ip, port)]).returncode == 0


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


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
