"""routeViaHost for real: a macvlan pod reaches ClusterIPs (kube-proxy emulated with an nft DNAT in the node)
and node-local addresses, through the node. Backends: a LAN host, a process on the node, another macvlan pod.
"""
import json
import subprocess
import sys

import pytest
from e2e_support import LAN_IP, NODE_IP, PROTO, SHIM, add_pod, node_sysctl, pod_ips

VIA = ["10.96.0.0/12", "169.254.20.10/32"]
SERVER = r"""
import socket, sys
s = socket.socket()
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
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"hello"); print(s.recv(200).decode())
"""


@pytest.fixture
def servers(topo):
    started = []

    def serve(ns, address, port):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, address, str(port)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
    yield serve
    for proc in started:
        proc.kill()
        proc.wait()


def request(topo, pod, address, port):
    """What the echo server answered, or None."""
    proc = topo.pod_exec(pod, [sys.executable, "-c", CLIENT, address, str(port)], timeout=20)
    return proc.stdout.strip() if proc.returncode == 0 else None


def kube_proxy(topo, services):
    """An nft DNAT like kube-proxy's: {cluster_ip: (backend_ip, backend_port)} on port 80."""
    rules = "".join(f"ip daddr {vip} tcp dport 80 dnat to {ip}:{port}\n" for vip, (ip, port) in services.items())
    script = f"table ip kubeproxy {{\n chain prerouting {{ type nat hook prerouting priority dstnat;\n{rules} }}\n}}\n"
    assert topo.node_exec(["nft", "-f", "-"], input=script).returncode == 0


def nft_ruleset(topo):
    return topo.node_exec(["nft", "list", "ruleset"]).stdout


def test_cluster_ips_reach_lan_node_and_pod_backends(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA)
    client, result = add_pod(cni, conf)
    backend_pod, backend_result = add_pod(cni, conf)
    backend_ip = pod_ips(backend_result)[0]
    servers(topo.lan, LAN_IP, 8080)
    servers(topo.node, NODE_IP, 8081)
    servers(backend_pod, backend_ip, 8082)
    kube_proxy(topo, {"10.96.0.10": (LAN_IP, 8080), "10.96.0.11": (NODE_IP, 8081), "10.96.0.12": (backend_ip, 8082)})
    # the result tells the runtime about the pod-side routes
    assert {"dst": "10.96.0.0/12", "gw": NODE_IP} in result["routes"]
    lan = request(topo, client, "10.96.0.10", 80)
    node = request(topo, client, "10.96.0.11", 80)
    pod = request(topo, client, "10.96.0.12", 80)
    assert lan == f"echo hello from {NODE_IP}", lan  # masqueraded by the node: the reply comes back through it
    assert node and node.startswith("echo hello from ")
    assert pod == f"echo hello from {NODE_IP}", pod
    assert cni.check(conf, client)[0] == 0


def test_node_local_address_is_reached_through_the_node(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    assert topo.node_exec(["ip", "addr", "add", "169.254.20.10/32", "dev", "lo"]).returncode == 0
    client, _ = add_pod(cni, chain(routeViaHost=VIA))
    servers(topo.node, "169.254.20.10", 53)
    answer = request(topo, client, "169.254.20.10", 53)
    assert answer and answer.startswith("echo hello from 192.168.1.")  # no NAT: the node sees the pod


def test_without_route_via_host_nothing_changes_and_cluster_ips_stay_unreachable(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    before = nft_ruleset(topo)
    client, _ = add_pod(cni, chain())
    pod_routes = topo.pod_exec(client, ["ip", "-json", "route"]).stdout
    assert "10.96.0.0" not in pod_routes and nft_ruleset(topo) == before
    servers(topo.lan, LAN_IP, 8080)
    kube_proxy(topo, {"10.96.0.10": (LAN_IP, 8080)})
    assert request(topo, client, "10.96.0.10", 80) is None


def test_forwarding_off_is_reported_and_the_pod_is_left_alone(cni, topo, chain):
    node_sysctl(topo, "net.ipv4.ip_forward", 0)
    before = nft_ruleset(topo)
    pod, _ = topo.add_pod()
    code, out, _ = cni.add(chain(routeViaHost=VIA), pod)
    assert code != 0 and out["code"] == 105 and "net.ipv4.ip_forward is not 1" in out["msg"]
    assert nft_ruleset(topo) == before
    assert topo.node_exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"  # never switched on


def test_del_cleans_the_pod_routes_and_the_table_after_the_last_pod(cni, topo, chain):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA)
    first, _ = add_pod(cni, conf)
    second, _ = add_pod(cni, conf)
    assert "table inet cni_route" in nft_ruleset(topo)
    assert cni.delete(conf, first)[0] == 0
    assert "table inet cni_route" in nft_ruleset(topo)  # the second pod still uses it
    routes = json.loads(topo.pod_exec(second, ["ip", "-json", "route"]).stdout)
    assert any(r["dst"] == "10.96.0.0/12" for r in routes)
    assert cni.delete(conf, second)[0] == 0
    assert "cni_route" not in nft_ruleset(topo)
    assert [r for r in cni.shim_routes(SHIM) if r.get("protocol") == PROTO] == []
