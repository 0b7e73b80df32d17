"""`route remove` on a real node: pods through the real libcni, then the node taken back to what it was before
route (links, addresses, routes of every table, rules, the nft ruleset, the files under the state dir), for
both kinds of pod of lifecycle.Node (routeViaHost: the nft table and routes inside the pod; Multus: reply
rules and tables inside the pod).
"""
import json

import pytest
from lifecycle import Node, cid, node_snapshot, our_routes

PREF = 32201  # reply_paths.RULE_PREF


@pytest.fixture(params=["route-via-host", "multus"])
def node(request, cni, topo, chain, tmp_path, route_plugin):
    return Node(request.param, cni, topo, chain, tmp_path, route_plugin)


def remove(node, *options):
    proc = node.person("this", "remove", "--state-dir", str(node.state), *options)
    return proc.returncode, proc.stdout


def routes_inside(node, pod):
    """What of route's is in the pod: routes of protocol 201 (every table) and rules of its preference."""
    found = []
    for family in ("-4", "-6"):
        found += [r for r in json.loads(node.topo.pod_exec(pod, ["ip", "-d", "-json", family, "route", "show",
                                                                 "table", "all"]).stdout)
                  if r.get("protocol") == "201"]
        found += [r for r in json.loads(node.topo.pod_exec(pod, ["ip", "-json", family, "rule"]).stdout)
                  if r.get("priority") == PREF]
    return found


def test_refused_while_pods_run_then_after_their_dels_the_node_is_as_before_route(node):
    before = node_snapshot(node.topo, node.state)
    stale, stale_ips, _ = node.add("this")
    node.topo.del_pod(stale)  # its namespace went without a DEL: its host route stays
    running, _, _ = node.add("this")
    added = node_snapshot(node.topo, node.state)
    code, out = remove(node)
    assert code == 1 and "refused, nothing changed" in out and cid(running) in out and cid(stale) not in out, out
    code, out = remove(node, "--dry-run", "--force")
    assert code == 0 and "would remove" in out, out
    assert node_snapshot(node.topo, node.state) == added
    assert stale_ips[0] in our_routes(node.topo)
    node.delete("this", running)
    code, out = remove(node)
    assert code == 0, out
    assert node_snapshot(node.topo, node.state) == before


def test_force_takes_route_out_of_running_pods_and_their_later_del_still_works(node):
    before = node_snapshot(node.topo, node.state)
    pods = [node.add("this")[0] for _ in range(2)]
    assert all(routes_inside(node, pod) for pod in pods) or node.route_keys == {}
    code, out = remove(node, "--force")
    assert code == 0, out
    assert [routes_inside(node, pod) for pod in pods] == [[], []]
    assert our_routes(node.topo) == [] and not node.state.exists()
    for pod in pods:  # the runtime's DEL of a pod that was running: never stuck
        node.delete("this", pod)
    assert remove(node)[0] == 0  # the DELs' locks
    assert node_snapshot(node.topo, node.state) == before
