"""Dual stack and hardened nodes, for real: IPv6 and strict ARP / rp_filter through the libcni chain."""
import json
import subprocess

import pytest

from beds import libcni
from beds.libcni import add_pod, pod_ips
from beds.topology import (
    ELSEWHERE_V6,
    LAN_V4,
    LAN_V6,
    MASTER,
    NODE_V4,
    NODE_V6,
    PROTO,
    SHIM,
    move_node_address,
    node_sysctl,
)


def split(ips):
    return [ip for ip in ips if ":" not in ip], [ip for ip in ips if ":" in ip]


def forget_neighbours(topo, pod):
    """So that a ping has to resolve the node again rather than use what an earlier ping learned."""
    topo.pod_exec(pod, ["ip", "neigh", "flush", "all"])
    topo.node_exec(["ip", "neigh", "flush", "all"])


def test_dual_stack_pod_reaches_node_and_lan_both_ways(topo, cni, dual_chain):
    pod, result = add_pod(cni, dual_chain())
    (v4,), (v6,) = split(pod_ips(result))
    routes = {r["dst"] for r in cni.shim_routes()}
    assert {v4, v6} <= routes
    for target in (v4, v6):
        assert cni.ping_from_node(target), f"node -> pod {target}"
    for target in (NODE_V4, NODE_V6, LAN_V4, LAN_V6):
        assert cni.ping_from_pod(pod, target), f"pod -> {target}"
    code, out, err = cni.check(dual_chain(), pod)
    assert code == 0, (out, err)


def test_dual_stack_with_a_master_that_has_only_ipv4(topo, cni, dual_chain):
    """The node's IPv6 address is on another NIC (with the IPv6 default route): the shim carries it as well,
    and the pod reaches it on its own link."""
    move_node_address(topo, families=(6,))
    conf = dual_chain()
    pod, result = add_pod(cni, conf)
    (v4,), (v6,) = split(pod_ips(result))
    for target in (v4, v6):
        assert cni.ping_from_node(target), f"node -> pod {target}"
    for target in (NODE_V4, ELSEWHERE_V6, LAN_V4, LAN_V6):
        assert cni.ping_from_pod(pod, target), f"pod -> {target}"
    shim = json.loads(topo.node_exec(["ip", "-json", "addr", "show", "dev", SHIM]).stdout)[0]
    assert {f"{a['local']}/{a['prefixlen']}" for a in shim["addr_info"] if a["scope"] == "global"} == \
        {f"{NODE_V4}/16", f"{ELSEWHERE_V6}/64"}
    pod_routes = json.loads(topo.pod_exec(pod, ["ip", "-json", "-6", "route"]).stdout)
    pod_routes += json.loads(topo.pod_exec(pod, ["ip", "-json", "-4", "route"]).stdout)
    assert [r["dst"] for r in pod_routes if r.get("protocol") == PROTO] == [ELSEWHERE_V6]  # 192.168.0.5: on-link
    assert {"dst": f"{ELSEWHERE_V6}/128"} in result["routes"]
    assert cni.check(conf, pod)[0] == 0
    assert cni.delete(conf, pod)[0] == 0
    assert [r for r in cni.node_routes() if r.get("protocol") == PROTO] == []
    pod_routes = json.loads(topo.pod_exec(pod, ["ip", "-json", "-6", "route"]).stdout)
    assert [r for r in pod_routes if r.get("protocol") == PROTO] == []


def test_without_the_node_address_on_the_shim_ipv6_fails(topo, cni, dual_chain):
    """What the shim's address copy is for: take it away and the pod cannot reach the node over IPv6."""
    pod, result = add_pod(cni, dual_chain())
    assert topo.node_exec(["ip", "addr", "del", f"{NODE_V6}/64", "dev", SHIM]).returncode == 0
    forget_neighbours(topo, pod)
    assert not cni.ping_from_pod(pod, NODE_V6)
    code, out, _ = cni.check(dual_chain(), pod)
    assert code != 0 and f"lacks the node address {NODE_V6}/64" in out["msg"]
    add_pod(cni, dual_chain())  # any ADD puts it back
    assert cni.ping_from_pod(pod, NODE_V6)


@pytest.mark.parametrize("settings", [
    {"net.ipv4.conf.all.arp_ignore": "1"},
    {"net.ipv4.conf.all.arp_ignore": "2"},
    {"net.ipv4.conf.all.rp_filter": "1"},
    {"net.ipv4.conf.all.rp_filter": "2"},
    {"net.ipv4.conf.all.arp_ignore": "2", "net.ipv4.conf.all.rp_filter": "1"},
], ids=lambda s: ",".join(f"{k.split('.')[-1]}={v}" for k, v in s.items()))
def test_hardened_node(topo, cni, dual_chain, settings):
    for key, value in settings.items():
        node_sysctl(topo, key, value)
    pod, result = add_pod(cni, dual_chain())
    (v4,), (v6,) = split(pod_ips(result))
    forget_neighbours(topo, pod)
    assert cni.ping_from_pod(pod, NODE_V4), "pod -> node"
    assert cni.ping_from_node(v4), "node -> pod"
    assert cni.ping_from_pod(pod, LAN_V4), "pod -> LAN"
    assert cni.ping_from_node(v6) and cni.ping_from_pod(pod, NODE_V6)


def test_arp_ignore_needs_the_address_on_the_shim(topo, cni, dual_chain):
    node_sysctl(topo, "net.ipv4.conf.all.arp_ignore", "1")
    pod, _ = add_pod(cni, dual_chain())
    assert topo.node_exec(["ip", "addr", "del", f"{NODE_V4}/16", "dev", SHIM]).returncode == 0
    forget_neighbours(topo, pod)
    assert not cni.ping_from_pod(pod, NODE_V4)


def test_the_shim_does_not_answer_the_lans_arp_for_the_node(topo, cni, dual_chain):
    """arp_filter on the shim: the LAN's ARP for the node is answered by the master only.

    Without it the shim answers too (the LAN then holds whichever reply came first). A shim that answers
    creates a neighbour entry for the asker on itself, which is what this looks for.
    """
    add_pod(cni, dual_chain())
    master_mac = json.loads(topo.node_exec(["ip", "-json", "link", "show", "dev", MASTER]).stdout)[0]["address"]
    for _ in range(3):
        topo.lan_exec(["ip", "neigh", "flush", "all"])
        topo.node_exec(["ip", "neigh", "flush", "all"])
        assert topo.lan_exec(["ping", "-c", "1", "-W", "2", NODE_V4]).returncode == 0
        neigh = json.loads(topo.lan_exec(["ip", "-json", "-4", "neigh", "show", NODE_V4]).stdout)
        assert neigh and neigh[0]["lladdr"] == master_mac
        on_shim = json.loads(topo.node_exec(["ip", "-json", "-4", "neigh", "show", "dev", SHIM]).stdout)
        assert [n for n in on_shim if n.get("dst") == LAN_V4] == []


def test_a_master_address_added_later_is_picked_up_by_the_next_add(topo, cni, dual_chain):
    node_sysctl(topo, "net.ipv4.conf.all.arp_ignore", "1")
    first, _ = add_pod(cni, dual_chain())
    assert topo.node_exec(["ip", "addr", "add", "192.168.0.6/16", "dev", MASTER]).returncode == 0
    assert topo.node_exec(["ip", "addr", "add", "fd00::6/64", "dev", MASTER, "nodad"]).returncode == 0
    assert not cni.ping_from_pod(first, "192.168.0.6")
    code, out, _ = cni.check(dual_chain(), first)
    assert code != 0 and "192.168.0.6/16" in out["msg"]
    add_pod(cni, dual_chain())
    forget_neighbours(topo, first)
    assert cni.ping_from_pod(first, "192.168.0.6") and cni.ping_from_pod(first, "fd00::6")
    assert cni.check(dual_chain(), first)[0] == 0
    # and a removed master address leaves the shim at the next ADD
    assert topo.node_exec(["ip", "addr", "del", "192.168.0.6/16", "dev", MASTER]).returncode == 0
    add_pod(cni, dual_chain())
    shim_addrs = {a["local"] for a in json.loads(topo.node_exec(
        ["ip", "-json", "addr", "show", "dev", SHIM]).stdout)[0]["addr_info"]}
    assert "192.168.0.6" not in shim_addrs and NODE_V4 in shim_addrs


def shim_addresses(topo):
    """The shim's addresses, without their flags: a link-local address is `tentative` until its DAD is done,
    which happens on the kernel's schedule, not the test's."""
    link = json.loads(topo.node_exec(["ip", "-json", "addr", "show", "dev", SHIM]).stdout)[0]
    return sorted((a["family"], a["local"], a["prefixlen"], a.get("scope")) for a in link["addr_info"])


def test_del_leaves_the_shim_configuration_to_the_other_pods(topo, cni, dual_chain):
    a, _ = add_pod(cni, dual_chain())
    b, _ = add_pod(cni, dual_chain())
    before = shim_addresses(topo)
    assert cni.delete(dual_chain(), a)[0] == 0
    assert shim_addresses(topo) == before
    assert cni.ping_from_pod(b, NODE_V4) and cni.ping_from_pod(b, NODE_V6)


def test_shim_mtu_follows_the_master(topo, cni, dual_chain):
    add_pod(cni, dual_chain())
    assert topo.node_exec(["ip", "link", "set", "dev", MASTER, "mtu", "1400"]).returncode == 0
    assert topo.node_exec(["ip", "link", "set", "dev", SHIM, "mtu", "1300"]).returncode == 0
    add_pod(cni, dual_chain())
    assert cni.shim_link()["mtu"] == 1400


def test_only_the_pod_interface_of_a_two_interface_result_is_routed(topo, tmp_path, route_plugin):
    """A prevResult with a host-side veth (no sandbox) and the pod's eth0: only eth0's IPs get routes."""
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "veth0a1b", "mac": "02:00:00:00:00:0a"},
                           {"name": "eth0", "mac": "02:00:00:00:00:0b", "sandbox": "/var/run/netns/x"}],
            "ips": [{"interface": 0, "address": "10.99.0.1/24"},
                    {"interface": 1, "address": "192.168.1.50/16"}, {"interface": 1, "address": "fd00::150/64"}]}
    conf = {"cniVersion": "1.0.0", "name": "rtt-route", "type": "route", "master": MASTER,
            "stateDir": str(tmp_path / "state"), "prevResult": prev}
    proc = subprocess.run(libcni.plugin_argv(topo.node, route_plugin, "ADD", container_id="two"),
                          input=json.dumps(conf), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == prev
    routes = json.loads(topo.node_exec(["ip", "-json", "route", "show", "dev", SHIM]).stdout)
    routes += json.loads(topo.node_exec(["ip", "-json", "-6", "route", "show", "dev", SHIM]).stdout)
    assert sorted(r["dst"] for r in routes if r.get("protocol") == PROTO) == ["192.168.1.50", "fd00::150"]
