"""The throw-away node of the e2e tests: node + lan namespaces joined by a veth pair, pods on demand, a second NIC
on demand, and the names the plugin is given there.

Nothing in here touches the machine's own (init netns) interfaces, routes or sysctls: links are created *inside*
the throw-away namespaces (``ip -n NS link add ...``) and all commands run via ``ip -n`` / ``ip netns exec``.

Layout built by :class:`Topology`::

    +-------------------- node netns ------+        +---- lan netns ------+
    | lo (up)                               |        | lo (up)             |
    | eno1  192.168.0.5/16, fd00::5/64  ----+--veth--+ eth0 192.168.0.7/16 |
    |                                       |        |      fd00::7/64     |
    +---------------------------------------+        +---------------------+

    pod netns (add_pod): empty apart from lo (down) -- the CNI chain fills it.
    uplink netns (add_uplink): a second NIC of the node, e.g. where the node's own address lives (move_node_address).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from .netns import create_netns, delete_netns, new_name, ns_exec
from .runtime import SetupError, run

MASTER = "eno1"  # the node's NIC: macvlan's and route's master
LAN_IF = "eth0"
NODE_V4 = "192.168.0.5"
NODE_V6 = "fd00::5"
LAN_V4 = "192.168.0.7"
LAN_V6 = "fd00::7"
PREFIX_V4 = 16
PREFIX_V6 = 64
SHIM = f"{MASTER}.host"  # route's shim on the master (its default name)
PROTO = "201"  # the protocol number of the plugin's routes
# A node whose own address is on a second NIC (move_node_address): eth1, towards its default gateway.
SECOND_NIC = "eth1"
ELSEWHERE_V4, ELSEWHERE_GW4 = "10.20.0.5", "10.20.0.1"
ELSEWHERE_V6, ELSEWHERE_GW6 = "fd20::5", "fd20::1"


class Topology:
    """node + lan namespaces joined by a veth pair, plus on-demand pod namespaces.

    Use as a context manager; :meth:`close` removes every namespace this
    object created, even when building failed half-way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: list[str] = []  # every netns we made, in order
        self.pods: list[str] = []
        self.node = new_name("node")
        self.lan = new_name("lan")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- construction -------------------------------------------------------
    def _add_ns(self, name: str) -> str:
        with self._lock:
            self._created.append(name)  # record first: close() must see it
        return create_netns(name)

    def _build(self) -> None:
        self._add_ns(self.node)
        self._add_ns(self.lan)
        node, lan = self.node, self.lan
        # Create the veth pair inside the node netns and push the peer
        # straight into the lan netns: nothing ever appears in the root netns.
        run(["ip", "-n", node, "link", "add", MASTER, "type", "veth",
             "peer", "name", LAN_IF, "netns", lan])
        for ns, dev, v4, v6 in ((node, MASTER, NODE_V4, NODE_V6),
                                (lan, LAN_IF, LAN_V4, LAN_V6)):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{v4}/{PREFIX_V4}", "dev", dev])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/{PREFIX_V6}",
                 "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self._wait_ready(((node, MASTER), (lan, LAN_IF)))

    @staticmethod
    def _wait_ready(links, timeout: float = 10.0) -> None:
        """Return once both ends have carrier and their test addresses are usable: a neighbour solicitation
        sent before the peer is up is dropped, and the retry comes a second later, which made the first IPv6
        ping of a busy test run (ping -W 2) fail now and then. Link-local addresses may still be in DAD:
        the test addresses do not need them."""
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for ns, dev in links:
                link = json.loads(run(["ip", "-n", ns, "-json", "addr", "show", "dev", dev]).stdout)[0]
                tentative = [a for a in link.get("addr_info", []) if a.get("tentative") and a.get("scope") == "global"]
                if "LOWER_UP" not in link["flags"] or tentative:
                    pending.append(f"{ns}/{dev}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"links not ready after {timeout} s: {', '.join(pending)}")
            time.sleep(0.05)

    # -- exec helpers -------------------------------------------------------
    def node_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.node, argv, **kw)

    def lan_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.lan, argv, **kw)

    def pod_exec(self, pod: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        if pod not in self.pods:
            raise ValueError(f"unknown pod netns {pod!r}")
        return ns_exec(pod, argv, **kw)

    # -- a second NIC ---------------------------------------------------------
    def add_uplink(self, node_if: str, node_addresses: Sequence[str], peer_addresses: Sequence[str]) -> str:
        """Another namespace joined to the node by a veth pair: `node_if` in the node with `node_addresses`,
        eth0 in the new namespace with `peer_addresses` (CIDRs of either family), both up. Returns the new
        namespace's name; it goes with the topology."""
        name = new_name("uplink")
        self._add_ns(name)
        run(["ip", "-n", self.node, "link", "add", node_if, "type", "veth", "peer", "name", LAN_IF, "netns", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        for ns, dev, addresses in ((self.node, node_if, node_addresses), (name, LAN_IF, peer_addresses)):
            for cidr in addresses:
                run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else [])])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self._wait_ready(((self.node, node_if), (name, LAN_IF)))
        return name

    # -- pods ---------------------------------------------------------------
    def add_pod(self) -> tuple[str, str]:
        """Create an empty pod netns; returns (name, /var/run/netns/name)."""
        name = new_name("pod")
        path = self._add_ns(name)
        with self._lock:
            self.pods.append(name)
        return name, path

    def del_pod(self, pod: str) -> None:
        """Delete a pod netns early (e.g. to test DEL without a netns)."""
        if pod not in self.pods:
            raise ValueError(f"unknown pod netns {pod!r}")
        delete_netns(pod)

    def namespaces(self) -> list[str]:
        with self._lock:
            return list(self._created)

    # -- teardown -----------------------------------------------------------
    def close(self) -> None:
        """Delete every namespace we created (pods first); never raises for
        an already-missing namespace.  Raises at the end if one could not be
        removed, so a leak is loud rather than silent."""
        with self._lock:
            names = list(self._created)
        # pods (newest first), then node, then lan
        ordered = [x for x in reversed(names) if x not in (self.node, self.lan)]
        ordered += [x for x in (self.node, self.lan) if x in names]
        leaked = []
        for name in ordered:
            try:
                if not delete_netns(name):
                    leaked.append(name)
            except Exception:  # pragma: no cover - keep going, report below
                leaked.append(name)
        with self._lock:
            self._created = [x for x in self._created if x in leaked]
        if leaked:
            raise RuntimeError("could not delete netns: {}".format(", ".join(leaked)))

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def node_sysctl(topo: Topology, key: str, value) -> None:
    assert topo.node_exec(["sysctl", "-qw", f"{key}={value}"]).returncode == 0


def ip_json(topo: Topology, argv: list[str]) -> Any | None:
    proc = topo.node_exec(["ip", "-json"] + argv)
    if proc.returncode != 0:
        return None
    text = proc.stdout.strip()
    return json.loads(text) if text else []


def move_node_address(topo: Topology, families=(4, 6)) -> str:
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
