"""Node layouts, for real: a master without an address, the node's address on a second NIC
(docs/node-layouts.md). Dual stack with a master that has only IPv4 is in test_dual_stack.py."""
import json
import subprocess

from beds import libcni, netns
from beds.libcni import add_pod, pod_ips
from beds.services import kube_proxy, request
from beds.topology import ELSEWHERE_GW4, ELSEWHERE_V4, ELSEWHERE_V6, MASTER, NODE_V4, PROTO, SHIM, move_node_address


def pod_route_table(topo, pod):
    return json.loads(topo.pod_exec(pod, ["ip", "-json", "route"]).stdout)


def shim_addresses(topo):
    link = json.loads(topo.node_exec(["ip", "-json", "addr", "show", "dev", SHIM]).stdout)[0]
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a.get("scope") == "global"}


def plugin_routes(cni):
    return [r for r in cni.node_routes() if r.get("protocol") == PROTO]


def test_master_without_an_address_node_and_pod_reach_each_other(cni, topo, chain, servers, tmp_path):
    move_node_address(topo)
    conf = chain()
    pod, result = add_pod(cni, conf)
    (ip,) = pod_ips(result)
    assert cni.ping_from_node(ip), "node -> pod"
    assert cni.ping_from_pod(pod, ELSEWHERE_V4), "pod -> node"
    servers(pod, ip, 8080)  # a kubelet probe: the node connects from its own address
    assert request(topo.node, ip, 8080) == f"echo hello from {ELSEWHERE_V4}"
    assert request(topo.node, ip, 8080, source=ELSEWHERE_V4) == f"echo hello from {ELSEWHERE_V4}"
    assert shim_addresses(topo) == {f"{ELSEWHERE_V4}/24", f"{ELSEWHERE_V6}/64"}
    (on_link,) = [r for r in pod_route_table(topo, pod) if r["dst"] == ELSEWHERE_V4]
    assert (on_link["dev"], on_link["protocol"], on_link["scope"], on_link.get("gateway")) == \
        ("eth0", PROTO, "link", None)
    assert {"dst": f"{ELSEWHERE_V4}/32"} in result["routes"]
    assert cni.check(conf, pod)[0] == 0
    assert topo.node_exec(["ping", "-c", "1", "-W", "2", ELSEWHERE_GW4]).returncode == 0  # the uplink as before

    assert cni.delete(conf, pod)[0] == 0
    assert plugin_routes(cni) == []
    assert [r for r in pod_route_table(topo, pod) if r.get("protocol") == PROTO] == []
    assert list((tmp_path / "route-state" / "networks" / "rtt-route" / "attachments").iterdir()) == []


def test_check_reports_a_missing_on_link_route_in_the_pod(cni, topo, chain, route_plugin, tmp_path):
    move_node_address(topo)
    pod, result = add_pod(cni, chain())
    assert topo.pod_exec(pod, ["ip", "route", "del", f"{ELSEWHERE_V4}/32", "dev", "eth0"]).returncode == 0
    # route's own CHECK (through libcni, macvlan's CHECK would stop first, at the route missing from the result)
    conf = {"cniVersion": "1.0.0", "name": "rtt-route", "type": "route", "master": MASTER,
            "stateDir": str(tmp_path / "route-state"), "prevResult": result}
    argv = libcni.plugin_argv(topo.node, route_plugin, "CHECK", netns.netns_path(pod),
                              container_id=cni.default_container_id(pod))
    proc = subprocess.run(argv, input=json.dumps(conf), capture_output=True, text=True)
    out = json.loads(proc.stdout)
    assert out["code"] == 103 and f"no route to {ELSEWHERE_V4}/32 dev eth0 in the pod" in out["msg"], out


def test_route_via_host_goes_through_the_node_address_on_the_other_nic(cni, topo, chain, servers):
    uplink = move_node_address(topo)
    assert topo.node_exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]).returncode == 0
    pod, result = add_pod(cni, chain(routeViaHost=["10.96.0.0/12"]))
    assert {"dst": "10.96.0.0/12", "gw": ELSEWHERE_V4} in result["routes"]
    servers(uplink, ELSEWHERE_GW4, 8080)
    kube_proxy(topo, {"10.96.0.10": (ELSEWHERE_GW4, 8080)})
    assert request(pod, "10.96.0.10", 80) == f"echo hello from {ELSEWHERE_V4}"  # masqueraded on eth1


def test_node_without_the_fallback_keeps_the_old_layout(cni, topo, chain):
    """nodeAddresses [] keeps only the master's addresses: the shim is bare and the node cannot reach its pod,
    which is what this issue is about."""
    move_node_address(topo)
    pod, result = add_pod(cni, chain(nodeAddresses=[]))
    assert shim_addresses(topo) == set() and {"dst": f"{ELSEWHERE_V4}/32"} not in result["routes"]
    assert not cni.ping_from_node(pod_ips(result)[0])


def test_the_master_keeping_its_addresses_changes_nothing_in_the_pod(cni, topo, chain):
    pod, result = add_pod(cni, chain())
    assert [r for r in pod_route_table(topo, pod) if r.get("protocol") == PROTO] == []
    assert shim_addresses(topo) == {f"{NODE_V4}/16", "fd00::5/64"}
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]  # the IPAM's, nothing added
