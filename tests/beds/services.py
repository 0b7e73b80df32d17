"""Services for the e2e tests: an echo server and its client, and kube-proxy's translation of a service address."""

from __future__ import annotations

import os
import sys

from .netns import ns_exec
from .topology import Topology

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
    proc = ns_exec(os.path.basename(ns), argv, timeout=20)
    return proc.stdout.strip() if proc.returncode == 0 else None


def kube_proxy(topo: Topology, services: dict[str, tuple[str, int]], tool: str = "nft") -> None:
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

