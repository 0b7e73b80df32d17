"""routeViaHost for real: a macvlan pod reaches ClusterIPs (kube-proxy emulated with a DNAT in the node)
and node-local addresses, through the node. Backends: a LAN host, a process on the node, another macvlan pod.
"""
import json

import pytest

from beds.libcni import add_pod, pod_ips
from beds.services import kube_proxy, request
from beds.topology import LAN_V4, LAN_V6, NODE_V4, NODE_V6, PROTO, SHIM, node_sysctl

VIA = ["10.96.0.0/12", "169.254.20.10/32"]


def nft_ruleset(topo):
    return topo.node_exec(["nft", "list", "ruleset"]).stdout


def test_cluster_ips_reach_lan_node_and_pod_backends(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA)
    client, result = add_pod(cni, conf)
    backend_pod, backend_result = add_pod(cni, conf)
    backend_ip = pod_ips(backend_result)[0]
    servers(topo.lan, LAN_V4, 8080)
    servers(topo.node, NODE_V4, 8081)
    servers(backend_pod, backend_ip, 8082)
    kube_proxy(topo, {"10.96.0.10": (LAN_V4, 8080), "10.96.0.11": (NODE_V4, 8081), "10.96.0.12": (backend_ip, 8082)})
    # the result tells the runtime about the pod-side routes
    assert {"dst": "10.96.0.0/12", "gw": NODE_V4} in result["routes"]
    lan = request(client, "10.96.0.10", 80)
    node = request(client, "10.96.0.11", 80)
    pod = request(client, "10.96.0.12", 80)
    assert lan == f"echo hello from {NODE_V4}", lan  # masqueraded by the node: the reply comes back through it
    assert node and node.startswith("echo hello from ")
    assert pod == f"echo hello from {NODE_V4}", pod
    assert cni.check(conf, client)[0] == 0


def test_node_local_address_is_reached_through_the_node(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    assert topo.node_exec(["ip", "addr", "add", "169.254.20.10/32", "dev", "lo"]).returncode == 0
    client, _ = add_pod(cni, chain(routeViaHost=VIA))
    servers(topo.node, "169.254.20.10", 53)
    answer = request(client, "169.254.20.10", 53)
    assert answer and answer.startswith("echo hello from 192.168.1.")  # no NAT: the node sees the pod


def test_without_route_via_host_nothing_changes_and_cluster_ips_stay_unreachable(cni, topo, chain, servers):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    before = nft_ruleset(topo)
    client, _ = add_pod(cni, chain())
    pod_routes = topo.pod_exec(client, ["ip", "-json", "route"]).stdout
    assert "10.96.0.0" not in pod_routes and nft_ruleset(topo) == before
    servers(topo.lan, LAN_V4, 8080)
    kube_proxy(topo, {"10.96.0.10": (LAN_V4, 8080)})
    assert request(client, "10.96.0.10", 80) is None


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


@pytest.mark.parametrize("tool", ["nft", "iptables"])
@pytest.mark.parametrize("family", [4, 6])
def test_kube_proxys_dnat_is_masqueraded_in_either_mode_and_family(cni, topo, dual_chain, servers, tool, family):
    """kube-proxy's nftables mode writes nft DNAT, its iptables mode the xt DNAT target: both are netfilter NAT.
    (IPVS, the third mode, is not in this kernel: see docs/services.md for why the rule covers it too.)"""
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        assert topo.node_exec(["sysctl", "-qw", f"{key}=1"]).returncode == 0
    node, lan, vip = (NODE_V4, LAN_V4, "10.96.0.10") if family == 4 else (NODE_V6, LAN_V6, "fd00:96::10")
    client, _ = add_pod(cni, dual_chain(routeViaHost=["10.96.0.0/12", "fd00:96::/112"]))
    servers(topo.lan, lan, 8080)
    kube_proxy(topo, {vip: (lan, 8080)}, tool)
    assert request(client, vip, 80) == f"echo hello from {node}"


def test_traffic_that_was_not_translated_is_not_masqueraded(cni, topo, chain, servers):
    """A routeViaHost CIDR the node routes on as it is (here to a LAN host): the destination sees the pod."""
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    assert topo.lan_exec(["ip", "addr", "add", "10.96.0.30/32", "dev", "lo"]).returncode == 0
    assert topo.node_exec(["ip", "route", "add", "10.96.0.0/12", "via", LAN_V4]).returncode == 0
    client, result = add_pod(cni, chain(routeViaHost=VIA))
    servers(topo.lan, "10.96.0.30", 80)
    assert request(client, "10.96.0.30", 80) == f"echo hello from {pod_ips(result)[0]}"
