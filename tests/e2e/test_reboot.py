"""A node reboot, for real: the node loses the shim, its routes and the nft table; the pods' namespaces and the
IPAM leases go; the state dir goes too when it is on tmpfs (the default /run/cni-route), or stays when a config
put it on disk. The runtime then ADDs its pods again (through the real libcni) and GCs with the list of what it
still runs. The node must be as a fresh ADD of those pods makes it: links (the shim with the same MAC),
addresses, routes of every table, rules, the nft ruleset, the files under the state dir.
"""
import pytest
from lifecycle import Node, node_snapshot, our_routes

POD = "ctr-pod-a"  # the container the runtime runs again after the reboot
GONE = "ctr-pod-b"  # one it no longer runs


@pytest.fixture
def node(cni, topo, chain, tmp_path, route_plugin):
    return Node("route-via-host", cni, topo, chain, tmp_path, route_plugin)


def without_indexes(snapshot):
    """A snapshot without the ifindex numbers: a link made again gets a new one."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "ifindex"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(snapshot)


def reboot(node, tmp_path, pods, state_on_tmpfs):
    """What a reboot takes from the node namespace, the pods and, on tmpfs, the state dir."""
    for pod in pods:
        node.topo.del_pod(pod)
    for argv in (["ip", "link", "del", "dev", "eno1.host"], ["nft", "delete", "table", "inet", "cni_route"],
                 ["rm", "-rf", str(tmp_path / "ipam"), *([str(node.state)] if state_on_tmpfs else [])]):
        assert node.topo.node_exec(argv).returncode == 0, argv


@pytest.mark.parametrize("state_on_tmpfs", [True, False], ids=["state-on-tmpfs", "state-on-disk"])
def test_after_a_reboot_the_pods_added_again_find_the_node_as_a_fresh_add_makes_it(node, tmp_path,
                                                                                   state_on_tmpfs):
    pod, ips, _ = node.add("this", POD)
    fresh = without_indexes(node_snapshot(node.topo, node.state))
    gone, gone_ips, _ = node.add("this", GONE)
    reboot(node, tmp_path, [pod, gone], state_on_tmpfs)
    again, again_ips, _ = node.add("this", POD)
    assert again_ips == ips  # the leases went with the reboot: host-local hands out the same address
    node.gc("this", valid=[POD])
    assert gone_ips[0] not in our_routes(node.topo)
    assert without_indexes(node_snapshot(node.topo, node.state)) == fresh
    node.check("this", again, POD)
    assert node.cni["this"].ping_from_node(ips[0])
