"""Pod IPs that would cut the node off, for real: ADD refuses them and the node keeps its gateway (docs/node-layouts.md,
"Pod IPs that would cut the node off")."""
import json

import pytest

from beds.topology import LAN_V4, MASTER


@pytest.mark.parametrize("pod_ip, collides", [
    ("192.168.0.1", "is the gateway of the node's route default via 192.168.0.1 dev eno1"),
    ("192.168.0.5", "is an address of the node (on eno1)"),
])
def test_a_pod_ip_that_would_cut_the_node_off_is_refused(cni, topo, chain, tmp_path, pod_ip, collides):
    """The LAN's router (192.168.0.1, on the lan namespace) is the node's gateway to 10.77.0.1 behind it."""
    assert topo.lan_exec(["ip", "addr", "add", "192.168.0.1/16", "dev", "eth0"]).returncode == 0
    assert topo.lan_exec(["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]).returncode == 0
    assert topo.node_exec(["ip", "route", "add", "default", "via", "192.168.0.1", "dev", MASTER]).returncode == 0
    ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
            "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": pod_ip, "rangeEnd": pod_ip,
                         "gateway": "192.168.0.254"}]]}
    conf = chain(plugins=[{"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": ipam},
                          {"type": "route", "master": MASTER, "stateDir": str(tmp_path / "state")}])
    before = node_state(topo)
    pod, _ = topo.add_pod()
    code, out, err = cni.add(conf, pod)
    assert code != 0 and out["code"] == 107, (out, err)
    assert f"pod IP {pod_ip} {collides}" in out["msg"]
    assert node_state(topo) == before  # no shim, no route, nothing
    assert json.loads(topo.node_exec(["ip", "-json", "route", "get", "192.168.0.1"]).stdout)[0]["dev"] == MASTER
    for target in ("192.168.0.1", "10.77.0.1", LAN_V4):
        assert topo.node_exec(["ping", "-c", "1", "-W", "2", target]).returncode == 0, target
    assert cni.delete(conf, pod)[0] == 0


def node_state(topo):
    """The node's links with their addresses, and its routes of every table (not the neighbours)."""
    links = json.loads(topo.node_exec(["ip", "-json", "addr", "show"]).stdout)
    routes = json.loads(topo.node_exec(["ip", "-json", "route", "show", "table", "all"]).stdout)
    return ([(link["ifname"], link["flags"], [(a["local"], a["prefixlen"]) for a in link.get("addr_info", [])])
             for link in links], routes)
