"""A Multus pod that holds much more than route put in it, and one that edits route's own routes: route's cost in
a pod is bounded by what route owns there (docs/multus.md, "What it costs"), and its DEL removes what is route's
whatever the pod did meanwhile.

The bounds are those a node enforces, not a stopwatch: each call (ADD, CHECK, a `route reconcile` pass, DEL) runs
in a memory cgroup with the DaemonSet's limit (tests/beds/memcg.py; killed there means it would be on a node), and is
given LOCK_WAIT seconds: a call that holds the shim's lock longer makes another pod's ADD or DEL on the node fail
on the lock's timeout (lib/cniroute/state.py, LOCK_TIMEOUT). And counts: what route records and puts in the pod
does not grow with the pod's routes.
"""
import json
import subprocess

import pytest
from test_multus import SECONDARY_NET, Bed

from beds import libcni, memcg, netns, runtime
from beds.topology import ELSEWHERE_V4, PROTO, SECOND_NIC

LOCK_WAIT = 30.0  # state.LOCK_TIMEOUT: how long another pod's call waits for the shim's lock before it fails
CLUSTER_ROUTES = 3000  # on eth0, in main: what a routing daemon in a network-function pod learns
TABLE_ROUTES = 150_000  # in another table of the pod
RECORD_BYTES = 8192  # an attachment's record, whatever the pod holds
RULE_PREF = 32201  # reply_paths.RULE_PREF
REPLY_TABLES = range(2010000, 2010000 + 2 ** 16)  # reply_paths.REPLY_TABLE + an ifindex
NEW_ADDRESS = "10.20.0.7"


@pytest.fixture
def dedicated(cni, topo, tmp_path):
    """The layout whose pods get the most of route's: the master without an address (on-link routes in the pod)."""
    return Bed(cni, topo, tmp_path, "dedicated-nic")


@pytest.fixture(params=["dedicated-nic", "node-nic"])
def bed(request, cni, topo, tmp_path):
    return Bed(cni, topo, tmp_path, request.param)


@pytest.fixture
def cgroup():
    with memcg.MemoryCgroup() as cg:
        yield cg


def bounded(cgroup, argv, what):
    """Run `argv` in the cgroup within LOCK_WAIT; (exit status, stdout, stderr). Fails the test when it is killed
    for the memory limit or runs longer than another call would wait for the lock."""
    cgroup.reset_peak()
    try:
        proc = subprocess.run(cgroup.argv(argv), capture_output=True, text=True, timeout=LOCK_WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} held on longer than another pod's call waits for the shim's lock ({LOCK_WAIT:g} s)")
    peak = cgroup.peak()
    print(f"{what}: exit {proc.returncode}, peak {peak / 2 ** 20:.1f} MiB")
    assert cgroup.oom_kills() == 0, f"{what} was killed at the DaemonSet's memory limit"
    return proc.returncode, proc.stdout, proc.stderr


def driver(bed, cgroup, verb, pod, ifname="net1"):
    """One libcni call of the secondary network (as Bed.add/check/delete), bounded; (status, parsed stdout)."""
    argv = [bed.cni.driver, "-cache-dir", str(bed.cni.cache_dir), "-container-id", bed.cid(pod), "-ifname", ifname,
            verb, str(bed.secondary), netns.netns_path(pod)]
    env = [f"{k}={v}" for k, v in runtime.runtime_env(CNI_PATH=bed.cni.cni_path).items()]
    status, out, err = bounded(cgroup, ["ip", "netns", "exec", bed.topo.node, "env", "-i", *env, *argv],
                               f"{verb.upper()} {ifname}")
    return status, (json.loads(out) if out.strip() else None), err


def reconcile(bed, cgroup, route_plugin, what):
    return bounded(cgroup, libcni.person_argv(bed.topo.node, route_plugin, "reconcile", "--state-dir",
                                             str(bed.state)), what)


def fill(topo, pod, lines, tmp_path, name):
    """Add routes to the pod with one `ip -batch` (as a routing daemon would, over netlink)."""
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    topo.pod_exec(pod, ["ip", "-batch", str(path)], check=True, timeout=300)


def ours(topo, pod):
    """What of route's is in the pod: its rules, every route of proto 201 (of any table: the kernel filters)."""
    found = []
    for family in ("-4", "-6"):
        rules = json.loads(topo.pod_exec(pod, ["ip", family, "-json", "rule", "show"]).stdout)
        found += [rule for rule in rules if rule.get("priority") == RULE_PREF]
        found += json.loads(topo.pod_exec(pod, ["ip", family, "-json", "route", "show", "table", "all", "proto",
                                                PROTO]).stdout)
    return found


def record(bed, pod):
    return (bed.state / "networks" / SECONDARY_NET / "attachments" / f"{bed.cid(pod)}@net1.json").read_bytes()


def renew(topo):
    """A DHCP renewal: the node's address on its second NIC changes (as tests/e2e/test_pod_side_heals.py)."""
    for argv in (["sysctl", "-qw", f"net.ipv4.conf.{SECOND_NIC}.promote_secondaries=1"],
                 ["ip", "addr", "add", f"{NEW_ADDRESS}/24", "dev", SECOND_NIC],
                 ["ip", "addr", "del", f"{ELSEWHERE_V4}/24", "dev", SECOND_NIC]):
        topo.node_exec(argv, check=True)


def test_a_pod_with_thousands_of_cluster_routes_and_a_huge_table_costs_what_route_owns(dedicated, cgroup,
                                                                                          route_plugin, tmp_path):
    bed, topo = dedicated, dedicated.topo
    pod, path = topo.add_pod()
    bed.add(pod, path, "eth0")
    fill(topo, pod, [f"route add 10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32 via 10.244.0.1 dev eth0"
                     for i in range(CLUSTER_ROUTES)], tmp_path, "cluster-routes")
    fill(topo, pod, [f"route add 172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32 dev eth0 table 500"
                     for i in range(TABLE_ROUTES)], tmp_path, "table-routes")

    status, result, err = driver(bed, cgroup, "add", pod)
    assert status == 0, (result, err)
    size = len(record(bed, pod))
    placed = ours(topo, pod)
    print(f"record {size} bytes; route's rules and routes in the pod: {len(placed)}")
    assert size <= RECORD_BYTES, "the record grows with the pod's own routes"
    assert len(placed) <= 20, "route's footprint in the pod grows with the pod's own routes"

    status, result, err = driver(bed, cgroup, "check", pod)
    assert status == 0, (result, err)

    status, _, err = reconcile(bed, cgroup, route_plugin, "reconcile, nothing to repair")
    assert status == 0, err
    renew(topo)  # the pod's on-link route and reply paths must move to the node's new address
    status, _, err = reconcile(bed, cgroup, route_plugin, "reconcile, the node's address changed")
    assert status == 0, err
    routes = json.loads(topo.pod_exec(pod, ["ip", "-json", "route", "show", "proto", PROTO]).stdout)
    assert [r["dst"] for r in routes] == [NEW_ADDRESS], routes
    assert len(record(bed, pod)) <= RECORD_BYTES

    status, result, err = driver(bed, cgroup, "del", pod)
    assert status == 0, (result, err)
    assert ours(topo, pod) == []
    assert len(json.loads(topo.pod_exec(pod, ["ip", "-json", "route", "show", "table", "main"]).stdout)) > \
        CLUSTER_ROUTES, "DEL took the pod's own routes"


def reply_table_routes(topo, pod, family):
    found = json.loads(topo.pod_exec(pod, ["ip", f"-{family}", "-json", "route", "show", "table", "all", "proto",
                                           PROTO]).stdout)
    return [r for r in found if str(r.get("table", "")).isdigit() and int(r["table"]) in REPLY_TABLES]


def argv_of(route, **changed):
    """The `ip route` words that make `route` (an object of ip -json -d), with some fields changed."""
    route = {**route, **changed}
    words = [route["dst"] if route["dst"] != "default" else ("::/0" if ":" in route.get("gateway", "::") else
                                                              "0.0.0.0/0")]
    if route.get("gateway"):
        words += ["via", route["gateway"]]
    words += ["dev", route["dev"], "table", str(route["table"]), "proto", PROTO]
    if "onlink" in route.get("flags", ()):
        words.append("onlink")
    if route.get("metric") is not None:
        words += ["metric", str(route["metric"])]
    if route.get("scope") and not route.get("gateway"):
        words += ["scope", route["scope"]]
    return words


def test_a_pod_that_edits_routes_own_routes_still_gets_its_del(bed, route_plugin):
    """The pod swaps a recorded reply-table route for one that differs only in metric (IPv6) or scope or metric
    (IPv4), duplicates one and moves one to another table: CHECK names each that differs, DEL succeeds and leaves
    nothing of route's in the pod."""
    topo = bed.topo
    pod, _, _ = bed.pod()
    assert bed.check(pod)[0] == 0
    v4, v6 = reply_table_routes(topo, pod, 4), reply_table_routes(topo, pod, 6)
    assert v4 and v6, (v4, v6)

    def run(family, words):
        proc = topo.pod_exec(pod, ["ip", f"-{family}", "route", *words])
        assert proc.returncode == 0, (words, proc.stderr)

    swapped6 = v6[0]
    run(6, ["del", *argv_of(swapped6)])
    run(6, ["add", *argv_of(swapped6, metric=(swapped6.get("metric") or 1024) + 1)])
    swapped4 = next((r for r in v4 if not r.get("gateway")), v4[0])
    variant = {"scope": "global"} if not swapped4.get("gateway") else {"metric": (swapped4.get("metric") or 0) + 7}
    run(4, ["del", *argv_of(swapped4)])
    run(4, ["add", *argv_of(swapped4, **variant)])
    others = [r for r in v4 if r is not swapped4]
    if others:
        moved = others[0]
        run(4, ["add", *argv_of(moved, table=600)])
        run(4, ["del", *argv_of(moved)])
    duplicated = v6[-1] if len(v6) > 1 else swapped6
    run(6, ["add", *argv_of(duplicated, metric=(duplicated.get("metric") or 1024) + 50)])

    rc, out, _ = bed.check(pod)
    assert rc != 0, out
    for route in (swapped6, swapped4, *others[:1]):
        dst = route["dst"] if route["dst"] != "default" else ("::/0" if route in v6 else "0.0.0.0/0")
        assert f"table {route['table']}" in out["msg"] and dst.split("/")[0] in out["msg"], (route, out)

    rc, out, err = bed.cni.delete(bed.secondary, pod, bed.cid(pod), "net1")
    assert rc == 0, (out, err)
    left = [r for r in ours(topo, pod) if r.get("priority") == RULE_PREF or
            (str(r.get("table", "main")).isdigit() and int(r["table"]) in REPLY_TABLES) or r.get("dev") == "net1"]
    assert left == [], left
    assert list((bed.state / "networks" / SECONDARY_NET / "attachments").iterdir()) == []


def test_a_pod_that_fills_routes_own_table_is_not_read_whole_and_gets_its_del(dedicated, cgroup, tmp_path):
    bed, topo = dedicated, dedicated.topo
    pod, _, _ = bed.pod()
    table = next(r["table"] for r in reply_table_routes(topo, pod, 4) if r["dev"] == "eth0")
    fill(topo, pod, [f"route add 172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32 dev eth0 table {table} proto "
                     f"{PROTO}" for i in range(TABLE_ROUTES)], tmp_path, "stuffed")
    status, result, err = driver(bed, cgroup, "check", pod)
    assert status != 0 and "the pod holds more than" in result["msg"], (result, err)
    status, result, err = driver(bed, cgroup, "del", pod)
    assert status == 0, (result, err)
    assert ours(topo, pod) == []
