"""The fake ip (tests/fakeip.py) against the real one: the same node state, built once in a real namespace and
once in the fake, must read the same through the plugin's own readers (node.Node.observe and what ADD derives
from it, routes.observe, plugin.locate). The unit and golden tests trust the fake; this is what keeps it
honest when either changes.
"""

from __future__ import annotations

import json
import sys

from beds import REPO
from beds.topology import MASTER, PROTO, SHIM
from cniroute import config, iproute, plugin, pod_routes, reply_paths, routes
from cniroute.journal import Journal
from cniroute.node import Node
from cniroute.records import PodRoute, ReplyRule, TableRoute
from cniroute.runner import Runner
from fakeip import FakeHost

GATEWAY = "192.168.0.1"
TABLE = reply_paths.REPLY_TABLE + 2
ABSENT = "absent0"
# The node: eno1 (made by the topology, given a known MAC), a shim with another MTU and one address copy, two pod
# routes of ours, a route of somebody else's, a default route, one without a next hop in another table, a
# neighbour entry on the shim. (A shim that is
# down has no routes: the kernel drops them.)
MASTER_MAC, SHIM_MAC = "52:54:00:12:34:56", "02:00:00:aa:bb:cc"
REAL_STATE = [
    ["link", "set", "dev", MASTER, "address", MASTER_MAC],
    ["link", "add", SHIM, "link", MASTER, "address", SHIM_MAC, "type", "macvlan", "mode", "bridge"],
    ["link", "set", "dev", SHIM, "mtu", "1400"],
    ["addr", "add", "192.168.0.5/16", "dev", SHIM, "noprefixroute"],
    ["link", "set", "dev", SHIM, "up"],
    ["route", "replace", "192.168.1.2/32", "dev", SHIM, "scope", "link", "proto", PROTO],
    ["-6", "route", "replace", "fd00::100/128", "dev", SHIM, "proto", PROTO],
    ["route", "replace", "192.168.1.3/32", "dev", MASTER, "scope", "link"],
    ["route", "replace", "default", "via", GATEWAY, "dev", MASTER],
    ["route", "replace", "default", "dev", MASTER, "table", "100"],  # no next hop: scope link
    ["neigh", "replace", "192.168.1.2", "lladdr", "02:00:00:00:00:99", "dev", SHIM, "nud", "stale"],
    # what route puts in a pod, read here as in a pod (pod_routes): an on-link route of ours in main, a reply
    # table's routes (one of another metric than route gives), a rule looking it up
    ["route", "replace", "10.20.0.5/32", "dev", MASTER, "scope", "link", "proto", PROTO],
    ["route", "replace", "10.244.0.1/32", "via", "192.168.0.7", "dev", MASTER, "onlink", "table", str(TABLE),
     "proto", PROTO, "metric", "5"],
    ["-6", "route", "replace", "fd44::1/128", "via", "fd00::7", "dev", MASTER, "onlink", "table", str(TABLE),
     "proto", PROTO],
    ["rule", "add", "from", "192.168.0.5", "lookup", str(TABLE), "pref", str(reply_paths.RULE_PREF)],
]
POD_PLAN = pod_routes.PodPlan(
    [PodRoute("10.20.0.5/32", None), PodRoute("10.21.0.5/32", None)],
    [ReplyRule("192.168.0.5", TABLE), ReplyRule("fd00::5", TABLE)],
    [TableRoute(TABLE, "10.244.0.1/32", "192.168.0.7", MASTER, True, None),
     TableRoute(TABLE, "fd44::1/128", "fd00::7", MASTER, True, None)])
PREFIXES = ["192.168.1.2/32", "192.168.1.3/32", "192.168.1.4/32", "fd00::100/128", "fd00::101/128"]
READER = f"""
import json, sys
sys.path[:0] = [{str(REPO / "lib")!r}, {str(REPO / "tests" / "e2e")!r}, {str(REPO / "tests")!r}]
from test_fakeip_contract import reads
print(json.dumps(reads(None)))
"""


def fake_node():
    host = FakeHost()
    host.add_link(MASTER, kind="veth", addresses=["192.168.0.5/16", "fd00::5/64"], mac=MASTER_MAC)  # as topology
    host.add_link(SHIM, kind="macvlan", parent=MASTER, mode="bridge", mtu=1400,
                  addresses=["192.168.0.5/16"], mac=SHIM_MAC)
    host.add_neighbour("192.168.1.2", SHIM, "02:00:00:00:00:99", "STALE")
    host.add_route("192.168.1.2/32", SHIM, protocol=PROTO)
    host.add_route("fd00::100/128", SHIM, protocol=PROTO)
    host.add_route("192.168.1.3/32", MASTER, protocol="boot")  # ip route's default
    host.add_route("192.168.0.0/16", MASTER, protocol="kernel")
    host.add_route("default", MASTER, protocol="boot", scope="global", gateway=GATEWAY)
    host.add_route("default", MASTER, protocol="boot", scope="link", table="100")
    host.add_route("10.20.0.5/32", MASTER, protocol=PROTO)
    host.routes += [{"dst": "10.244.0.1/32", "dev": MASTER, "gateway": "192.168.0.7", "onlink": True, "metric": 5,
                     "protocol": PROTO, "scope": "global", "table": str(TABLE)},
                    {"dst": "fd44::1/128", "dev": MASTER, "gateway": "fd00::7", "onlink": True, "protocol": PROTO,
                     "scope": "global", "table": str(TABLE)}]
    host.rules.append({"src": "192.168.0.5", "table": str(TABLE), "priority": reply_paths.RULE_PREF})
    return host


def reads(host):
    """What the plugin reads of the node, as plain JSON: `host` None reads the real one it runs in."""
    runner = Runner(Journal(), host=host)
    node = Node.observe(runner, neighbours_of=("192.168.1.2", "192.168.1.3", "fd00::100"))
    conf = config.load({"cniVersion": "1.0.0", "name": "n", "type": "route"})  # master from the default route
    return {
        "links": {name: {**link._asdict(), "addresses": sorted(map(list, link.global_addresses))}
                  for name, link in node.links.items() if name in (MASTER, SHIM, ABSENT)},
        "shim addresses": sorted(a.cidr for a in node.shim_addresses(MASTER, SHIM)),
        "collisions": node.collisions([*PREFIXES, f"{GATEWAY}/32", "192.168.0.5/32"], SHIM),
        "routes": {prefix: sorted([r["dst"], r["dev"], r.get("protocol"), r.get("scope"), routes.is_ours(r, SHIM)]
                                  for r in found)
                   for prefix, found in routes.observe(runner, PREFIXES).items()},
        "locate": plugin.locate(conf, runner),
        "next hops and defaults": sorted([r["dst"], r.get("dev"), r.get("table", "main"), r.get("gateway")]
                                         for r in node.routes if r.get("gateway") or r["dst"] == "default"),
        "neighbours": sorted(map(json.dumps, node.neighbours)),
        # the pod side (here the node's namespace stands in for a pod's)
        "pod side differences": pod_routes.problems(runner, POD_PLAN, None, MASTER),
        "the way out of": [[a.get("dst"), a.get("gateway"), a.get("dev")]
                           for a in runner.read([iproute.get_route_out_of("10.99.0.1", MASTER)])],
    }


def test_the_fake_reads_like_the_real_ip(topo):
    for argv in REAL_STATE:
        topo.node_exec(["ip", *argv], check=True)
    real = json.loads(topo.node_exec([sys.executable, "-c", READER], check=True, timeout=60).stdout)
    fake = json.loads(json.dumps(reads(fake_node())))
    assert real["links"][SHIM]["mtu"] == 1400 and real["routes"]["192.168.1.2/32"], real  # the state is there
    assert fake == real


def test_the_contract_sees_a_difference(topo):
    """The comparison is not vacuous: a fake that differs in one route is caught."""
    for argv in REAL_STATE:
        topo.node_exec(["ip", *argv], check=True)
    real = json.loads(topo.node_exec([sys.executable, "-c", READER], check=True, timeout=60).stdout)
    different = fake_node()
    different.routes = [r for r in different.routes if r["dst"] != "fd00::100/128"]
    assert json.loads(json.dumps(reads(different))) != real
