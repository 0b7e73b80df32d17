"""End-to-end tests: real libcni (tests/cnidriver) driving the chain
macvlan(+host-local) -> route inside throw-away network namespaces.

Each test reads the host (node netns) state before and after the CNI
operation, like the containernetworking plugin tests do, and asserts both
what must have changed and what must not.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os

import pytest

from beds.libcni import add_pod, failed, ok, pod_ips
from beds.topology import LAN_V4, MASTER, NODE_V4, SHIM, ip_json, node_sysctl

VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]
POOL = (ipaddress.ip_address("192.168.1.2"), ipaddress.ip_address("192.168.1.254"))


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def is_kernel_ll(route):
    """IPv6 link-local/multicast routes the kernel adds by itself when a link
    comes up; not the plugin's doing."""
    dst = route.get("dst", "")
    return route.get("protocol") == "kernel" and (dst.startswith("fe80") or dst.startswith("ff00"))


def plugin_routes(routes):
    return [r for r in routes if not is_kernel_ll(r)]


def _dst_matches(route, ip):
    host_len = 32 if ipaddress.ip_address(ip).version == 4 else 128
    return route.get("dst") in (ip, f"{ip}/{host_len}")


def routes_to(cni, ip):
    return [r for r in cni.shim_routes() if _dst_matches(r, ip)]


def assert_pod_route(cni, ip):
    found = routes_to(cni, ip)
    assert len(found) == 1, f"expected exactly one route {ip} dev {SHIM}, got {found} (all: {cni.node_routes()})"
    if ipaddress.ip_address(ip).version == 4:
        assert found[0].get("scope") == "link", f"route {ip} is not scope link: {found[0]}"
    assert "gateway" not in found[0], found[0]


def assert_no_pod_route(cni, ip):
    leftovers = [r for r in cni.node_routes() if _dst_matches(r, ip)]
    assert leftovers == [], f"route for {ip} still present: {leftovers}"


def assert_shim_healthy(cni):
    link = cni.shim_link()
    assert link is not None, f"{SHIM} does not exist"
    info = link.get("linkinfo", {})
    assert info.get("info_kind") == "macvlan", link
    assert info.get("info_data", {}).get("mode") == "bridge", link
    assert link.get("link") == MASTER, link
    assert "UP" in link.get("flags", []), link
    return link


def link_snapshot(link):
    """The parts of a link that must not change under our feet."""
    info = link.get("linkinfo", {})
    return {
        "ifindex": link.get("ifindex"),
        "ifname": link.get("ifname"),
        "kind": info.get("info_kind"),
        "mode": info.get("info_data", {}).get("mode"),
        "link": link.get("link"),
        "flags": sorted(link.get("flags", [])),
        "address": link.get("address"),
        "mtu": link.get("mtu"),
    }


def pod_addrs(topo, pod, ifname="eth0"):
    r = topo.pod_exec(pod, ["ip", "-json", "addr", "show", "dev", ifname])
    assert r.returncode == 0, r.stderr
    return [a["local"] for link in json.loads(r.stdout) for a in link.get("addr_info", [])]


def single_pod_ip(result, cni_version):
    assert isinstance(result, dict), result
    assert result.get("cniVersion") == cni_version, \
        "result cniVersion {!r} != config {!r}: {}".format(result.get("cniVersion"), cni_version, result)
    ips = pod_ips(result)
    assert len(ips) == 1, f"expected one pod IP for eth0 in result: {result}"
    ip = ipaddress.ip_address(ips[0])
    assert POOL[0] <= ip <= POOL[1], ips
    return ips[0]


def add_pod_with_ip(cni, conf, cni_version="1.0.0"):
    pod, result = add_pod(cni, conf)
    return pod, single_pod_ip(result, cni_version)


# --------------------------------------------------------------------------
# (a) + (b): the functional check, for every cniVersion
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cni_version", VERSIONS)
def test_add_connectivity_and_del(cni, topo, chain, cni_version):
    conf = chain(cni_version=cni_version)
    pod, pod_path = topo.add_pod()

    routes_before = cni.node_routes()
    links_before = {link["ifname"]: link for link in cni.node_links()}
    assert SHIM not in links_before

    res = ok(cni.add(conf, pod_path), "ADD")
    ip = single_pod_ip(res, cni_version)
    # the result is the truth about the pod
    assert ip in pod_addrs(topo, pod), (ip, pod_addrs(topo, pod))

    # host state after ADD
    assert_shim_healthy(cni)
    assert_pod_route(cni, ip)
    added = [r for r in plugin_routes(cni.node_routes()) if r not in routes_before]
    assert len(added) == 1 and _dst_matches(added[0], ip), \
        f"ADD must add exactly the pod route, added: {added}"
    assert all(r in cni.node_routes() for r in routes_before), "ADD removed host routes"
    links_after = {link["ifname"]: link for link in cni.node_links()}
    assert set(links_after) == set(links_before) | {SHIM}, sorted(links_after)
    assert link_snapshot(links_after[MASTER])["ifindex"] == link_snapshot(links_before[MASTER])["ifindex"]

    # connectivity
    assert cni.ping_from_node(ip), f"host -> pod {ip}"
    assert cni.ping_from_pod(pod, NODE_V4), f"pod -> host {NODE_V4}"
    assert cni.ping_from_pod(pod, LAN_V4), f"pod -> LAN host {LAN_V4}"

    # DEL (for 0.3.1 libcni passes no prevResult: the plugin must use stateDir)
    ok(cni.delete(conf, pod_path), "DEL")
    assert_no_pod_route(cni, ip)
    assert plugin_routes(cni.node_routes()) == plugin_routes(routes_before), \
        "host routes not restored after DEL"


def test_result_passes_through_unchanged_shape(cni, topo, chain):
    """route must print prevResult (IPs, interfaces, routes, dns) - not a
    stripped down or re-addressed one."""
    conf = chain()
    pod, _ = topo.add_pod()
    res = ok(cni.add(conf, pod), "ADD")
    assert res["cniVersion"] == "1.0.0"
    names = [i.get("name") for i in res.get("interfaces", [])]
    assert "eth0" in names, res
    assert any(r.get("dst") == "0.0.0.0/0" for r in res.get("routes", [])), res
    ip = res["ips"][0]
    assert ip["address"].endswith("/16") and ip.get("gateway") == "192.168.0.1", res


def test_result_describes_the_real_pod_interface(cni, topo, chain):
    conf = chain()
    pod, pod_path = topo.add_pod()
    res = ok(cni.add(conf, pod), "ADD")
    eth0 = [i for i in res["interfaces"] if i.get("name") == "eth0"]
    assert len(eth0) == 1 and eth0[0].get("sandbox") == pod_path, res
    r = topo.pod_exec(pod, ["ip", "-json", "link", "show", "dev", "eth0"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["address"] == eth0[0].get("mac"), (r.stdout, res)


def test_custom_ifname(cni, topo, chain):
    """Only the interface named CNI_IFNAME counts - nothing hard-codes eth0."""
    conf = chain()
    pod, _ = topo.add_pod()
    res = ok(cni.add(conf, pod, ifname="net1"), "ADD ifname=net1")
    ips = pod_ips(res, "net1")
    assert len(ips) == 1, res
    assert_pod_route(cni, ips[0])
    assert cni.ping_from_node(ips[0])
    ok(cni.check(conf, pod, ifname="net1"), "CHECK ifname=net1")
    ok(cni.delete(conf, pod, ifname="net1"), "DEL ifname=net1")
    assert_no_pod_route(cni, ips[0])


def test_custom_bridge_name(cni, topo, chain):
    conf = chain(bridge="rtshim0")
    pod, ip = add_pod_with_ip(cni, conf)
    assert cni.shim_link() is None, "default-named shim created although bridge=rtshim0"
    link = cni.shim_link("rtshim0")
    assert link is not None
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    assert link.get("link") == MASTER and "UP" in link["flags"], link
    found = [r for r in cni.shim_routes("rtshim0") if _dst_matches(r, ip)]
    assert len(found) == 1 and found[0].get("scope") == "link", cni.node_routes()
    assert cni.ping_from_node(ip)
    ok(cni.check(conf, pod), "CHECK")
    ok(cni.delete(conf, pod), "DEL")
    assert_no_pod_route(cni, ip)


def test_existing_down_shim_is_reused_and_brought_up(cni, topo, chain):
    r = topo.node_exec(["ip", "link", "add", SHIM, "link", MASTER, "type", "macvlan",
                        "mode", "bridge"])
    assert r.returncode == 0, r.stderr
    before = cni.shim_link()
    assert "UP" not in before["flags"]
    conf = chain()
    pod, ip = add_pod_with_ip(cni, conf)
    after = assert_shim_healthy(cni)
    assert after["ifindex"] == before["ifindex"], "a valid shim must be reused, not recreated"
    assert_pod_route(cni, ip)
    assert cni.ping_from_node(ip)


def test_dual_stack_routes(cni, topo, chain, tmp_path):
    """IPv6 pod addresses get a /128 route on the shim (no v6 ping: a shim
    without addresses does not answer NDP for the node's fd00::5)."""
    plugins = [
        {"type": "macvlan", "master": MASTER, "mode": "bridge",
         "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam6"),
                  "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": "192.168.1.2",
                               "rangeEnd": "192.168.1.254"}],
                             [{"subnet": "fd00::/64", "rangeStart": "fd00::1:2",
                               "rangeEnd": "fd00::1:fe"}]]}},
        {"type": "route", "master": MASTER, "bridge": SHIM,
         "stateDir": str(tmp_path / "route-state6")},
    ]
    conf = chain(plugins=plugins)
    pod, _ = topo.add_pod()
    res = ok(cni.add(conf, pod), "ADD dual stack")
    ips = pod_ips(res)
    v4 = [i for i in ips if ipaddress.ip_address(i).version == 4]
    v6 = [i for i in ips if ipaddress.ip_address(i).version == 6]
    assert len(v4) == 1 and len(v6) == 1, res
    assert_pod_route(cni, v4[0])
    assert_pod_route(cni, v6[0])
    assert cni.ping_from_node(v4[0])
    ok(cni.check(conf, pod), "CHECK dual stack")
    r = topo.node_exec(["ip", "-6", "route", "del", v6[0] + "/128", "dev", SHIM])
    assert r.returncode == 0, r.stderr
    failed(cni.check(conf, pod), "CHECK without the v6 route")
    ok(cni.delete(conf, pod), "DEL dual stack")
    assert_no_pod_route(cni, v4[0])
    assert_no_pod_route(cni, v6[0])


def test_default_bridge_name_and_unknown_keys(cni, topo, chain):
    conf = chain(bridge=None, someUnknownKey={"x": [1, 2]}, anotherOne="ignored")
    pod, ip = add_pod_with_ip(cni, conf)
    assert_shim_healthy(cni)  # default name <master>.host == eno1.host
    assert_pod_route(cni, ip)
    assert cni.ping_from_node(ip)


def test_add_without_prev_result_is_invalid_config(cni, topo, chain, tmp_path):
    """A route-only list: libcni runs route first, so there is no prevResult."""
    conf = chain(plugins=[{"type": "route", "master": MASTER, "bridge": SHIM,
                           "stateDir": str(tmp_path / "route-state")}])
    pod, _ = topo.add_pod()
    err = failed(cni.add(conf, pod), "ADD without prevResult")
    assert err["code"] == 7, err
    assert cni.shim_link() is None, "invalid config must not create the shim"


# --------------------------------------------------------------------------
# (c) several pods; DEL of one keeps the others
# --------------------------------------------------------------------------

def test_del_one_of_three_keeps_others(cni, topo, chain):
    conf = chain()
    pods = [add_pod_with_ip(cni, conf) for _ in range(3)]
    ips = [ip for _, ip in pods]
    assert len(set(ips)) == 3, ips
    shim = assert_shim_healthy(cni)
    for ip in ips:
        assert_pod_route(cni, ip)

    gone_pod, gone_ip = pods[1]
    ok(cni.delete(conf, gone_pod), "DEL pod 2")

    assert_no_pod_route(cni, gone_ip)
    # the shim must survive (same device) while other pods use it
    shim_after = assert_shim_healthy(cni)
    assert shim_after["ifindex"] == shim["ifindex"], "shim was recreated by DEL"
    for pod, ip in (pods[0], pods[2]):
        assert_pod_route(cni, ip)
        assert cni.ping_from_node(ip), f"host -> {ip} after other pod's DEL"
        assert cni.ping_from_pod(pod, NODE_V4), f"{ip} -> host after other pod's DEL"
        assert cni.ping_from_pod(pod, LAN_V4)
    assert len([r for r in cni.shim_routes() if not is_kernel_ll(r)]) == 2


def test_an_address_that_comes_back_on_another_pod_is_reached_at_once(cni, topo, chain):
    """The node caches a MAC per pod address on the shim. A REACHABLE entry left from the address's last pod
    (say its DEL never ran) would send the node's packets to a MAC nobody has for as long as it stays confirmed;
    ADD drops it, and DEL drops the entry of the pod it removes."""
    conf = chain()
    first, first_ip = add_pod_with_ip(cni, conf)  # makes the shim
    node_sysctl(topo, f"net/ipv4/neigh/{SHIM}/base_reachable_time_ms", 600000)  # the old entry stays confirmed
    next_ip = str(ipaddress.ip_address(first_ip) + 1)  # what host-local hands out next
    # The gratuitous ARP that macvlan sends for the new pod would correct the entry: here it is lost.
    lost = ("table arp rtt {\n chain input {\n type filter hook input priority 0;\n"
            f" arp operation request arp saddr ip {next_ip} arp daddr ip {next_ip} drop\n }}\n}}\n")
    assert topo.node_exec(["nft", "-f", "-"], input=lost).returncode == 0
    stale = ["neigh", "replace", next_ip, "lladdr", "02:00:00:de:ad:01", "dev", SHIM, "nud", "reachable"]
    assert topo.node_exec(["ip", *stale]).returncode == 0

    second, second_ip = add_pod_with_ip(cni, conf)
    assert second_ip == next_ip
    assert cni.ping_from_node(second_ip), "the node still sends to the old MAC"
    [entry] = ip_json(topo, ["neigh", "show", "to", second_ip, "dev", SHIM])
    assert entry["lladdr"] != "02:00:00:de:ad:01", entry

    ok(cni.delete(conf, second), "DEL")
    assert ip_json(topo, ["neigh", "show", "to", second_ip, "dev", SHIM]) == []
    assert cni.ping_from_node(first_ip)


# --------------------------------------------------------------------------
# (d) DEL never fails because something is already gone
# --------------------------------------------------------------------------

def _lose_cache(cni):
    # libcni then has no cached result: DEL reaches the plugins without prevResult
    results = cni.cache_dir / "results"
    for f in os.listdir(results):
        os.unlink(results / f)


@pytest.mark.parametrize("scenario", [
    "twice", "never-added", "netns-gone", "shim-gone", "no-prevresult-cache-lost",
])
def test_del_is_idempotent(cni, topo, chain, scenario):
    conf = chain()
    pod, _ = topo.add_pod()
    ip = None
    if scenario != "never-added":
        res = ok(cni.add(conf, pod), "ADD")
        ip = single_pod_ip(res, "1.0.0")
        assert_pod_route(cni, ip)

    if scenario == "netns-gone":
        topo.del_pod(pod)
    elif scenario == "shim-gone":
        assert topo.node_exec(["ip", "link", "del", SHIM]).returncode == 0
    elif scenario == "no-prevresult-cache-lost":
        _lose_cache(cni)

    ok(cni.delete(conf, pod), f"first DEL ({scenario})")
    if ip:
        assert_no_pod_route(cni, ip)
    ok(cni.delete(conf, pod), f"second DEL ({scenario})")
    if ip:
        assert_no_pod_route(cni, ip)


@pytest.mark.parametrize("cni_version", ["0.3.1", "1.0.0"])
def test_del_twice_per_version(cni, topo, chain, cni_version):
    conf = chain(cni_version=cni_version)
    pod, ip = add_pod_with_ip(cni, conf, cni_version)
    ok(cni.delete(conf, pod), "DEL 1")
    ok(cni.delete(conf, pod), "DEL 2")
    assert_no_pod_route(cni, ip)


# --------------------------------------------------------------------------
# (e) CHECK
# --------------------------------------------------------------------------

def _route_deleted(topo, ip):
    return topo.node_exec(["ip", "route", "del", ip + "/32", "dev", SHIM])


def _route_scope_global(topo, ip):
    _route_deleted(topo, ip)
    return topo.node_exec(["ip", "route", "add", ip + "/32", "dev", SHIM, "scope", "global"])


def _route_on_master(topo, ip):
    _route_deleted(topo, ip)
    return topo.node_exec(["ip", "route", "add", ip + "/32", "dev", MASTER, "scope", "link"])


def _shim_down(topo, ip):
    return topo.node_exec(["ip", "link", "set", SHIM, "down"])


def _shim_gone(topo, ip):
    return topo.node_exec(["ip", "link", "del", SHIM])


def _shim_private(topo, ip):
    return topo.node_exec(["ip", "link", "set", SHIM, "type", "macvlan", "mode", "private"])


BREAKAGES = {
    "route-deleted": _route_deleted,
    "shim-down": _shim_down,
    "route-scope-global": _route_scope_global,
    "route-on-master": _route_on_master,
    "shim-deleted": _shim_gone,
    "shim-mode-private": _shim_private,
}


@pytest.mark.parametrize("cni_version", ["0.4.0", "1.0.0"])  # libcni: CHECK needs >= 0.4.0
def test_check_passes_when_healthy(cni, topo, chain, cni_version):
    conf = chain(cni_version=cni_version)
    pod, ip = add_pod_with_ip(cni, conf, cni_version)
    routes = cni.node_routes()
    shim = cni.shim_link()
    ok(cni.check(conf, pod), "CHECK on a healthy pod")
    # CHECK must not modify anything
    assert cni.node_routes() == routes
    assert link_snapshot(cni.shim_link()) == link_snapshot(shim)


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_check_fails_when_broken(cni, topo, chain, breakage):
    conf = chain()
    pod, ip = add_pod_with_ip(cni, conf)
    ok(cni.check(conf, pod), "CHECK before breaking")
    r = BREAKAGES[breakage](topo, ip)
    assert r.returncode == 0, f"could not break the host: {r.stderr}"
    routes = cni.node_routes()
    failed(cni.check(conf, pod), f"CHECK after {breakage}")
    # CHECK reports, it does not repair
    assert cni.node_routes() == routes


def test_check_other_pods_unaffected(cni, topo, chain):
    conf = chain()
    pod1, ip1 = add_pod_with_ip(cni, conf)
    pod2, ip2 = add_pod_with_ip(cni, conf)
    assert _route_deleted(topo, ip1).returncode == 0
    failed(cni.check(conf, pod1), "CHECK pod1 without route")
    ok(cni.check(conf, pod2), "CHECK pod2 still healthy")


# --------------------------------------------------------------------------
# (f) a foreign device squatting on the shim name
# --------------------------------------------------------------------------

FOREIGN = {
    "veth": [["ip", "link", "add", SHIM, "type", "veth", "peer", "name", "rttpeer0"]],
    # (this kernel has no dummy/vlan/ipvlan modules; bridge and veth exist)
    "linux-bridge": [["ip", "link", "add", SHIM, "type", "bridge"]],
    "macvlan-private": [["ip", "link", "add", SHIM, "link", MASTER, "type", "macvlan",
                         "mode", "private"]],
    "macvlan-vepa": [["ip", "link", "add", SHIM, "link", MASTER, "type", "macvlan",
                      "mode", "vepa"]],
    "macvlan-bridge-other-master": [
        ["ip", "link", "add", "rttva0", "type", "veth", "peer", "name", "rttvb0"],
        ["ip", "link", "set", "rttva0", "up"],
        ["ip", "link", "add", SHIM, "link", "rttva0", "type", "macvlan", "mode", "bridge"],
    ],
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_shim_device_makes_add_fail_untouched(cni, topo, chain, kind):
    assert cni.shim_link() is None
    for argv in FOREIGN[kind]:
        r = topo.node_exec(argv)
        assert r.returncode == 0, r.stderr
    before = cni.shim_link()
    assert before is not None
    routes_before = cni.node_routes()

    conf = chain()
    pod, _ = topo.add_pod()
    err = failed(cni.add(conf, pod), f"ADD with foreign {kind} named {SHIM}")
    assert err.get("msg"), err

    after = cni.shim_link()
    assert after is not None, "foreign device was deleted"
    assert link_snapshot(after) == link_snapshot(before), "foreign device was modified"
    assert plugin_routes(cni.node_routes()) == plugin_routes(routes_before), \
        "routes changed although ADD failed"


# --------------------------------------------------------------------------
# (g) concurrency
# --------------------------------------------------------------------------

N_PARALLEL = 32


def test_parallel_adds(cni, topo, chain):
    conf = chain()
    pods = [topo.add_pod()[0] for _ in range(N_PARALLEL)]
    ids = [f"par-{i:02d}-{p}" for i, p in enumerate(pods)]
    assert len(set(ids)) == N_PARALLEL

    with concurrent.futures.ThreadPoolExecutor(max_workers=N_PARALLEL) as ex:
        results = list(ex.map(lambda a: cni.add(conf, a[0], a[1]), zip(pods, ids)))

    errors = [(p, r) for p, r in zip(pods, results) if r[0] != 0]
    assert not errors, f"{len(errors)}/{N_PARALLEL} parallel ADDs failed, first: {errors[0]}"
    ips = [single_pod_ip(r[1], "1.0.0") for r in results]
    assert len(set(ips)) == N_PARALLEL, ips

    # exactly one shim, and it is the only macvlan in the node netns
    macvlans = [link["ifname"] for link in cni.node_links()
                if link.get("linkinfo", {}).get("info_kind") == "macvlan"]
    assert macvlans == [SHIM], macvlans
    assert_shim_healthy(cni)

    shim_routes = plugin_routes(cni.shim_routes())
    assert len(shim_routes) == N_PARALLEL, shim_routes
    for ip in ips:
        assert_pod_route(cni, ip)
    for pod, ip in list(zip(pods, ips))[::8]:
        assert cni.ping_from_node(ip), ip
        assert cni.ping_from_pod(pod, NODE_V4), ip

    with concurrent.futures.ThreadPoolExecutor(max_workers=N_PARALLEL) as ex:
        dels = list(ex.map(lambda a: cni.delete(conf, a[0], a[1]), zip(pods, ids)))
    errors = [r for r in dels if r[0] != 0]
    assert not errors, f"parallel DELs failed, first: {errors[0]}"
    assert plugin_routes(cni.shim_routes()) == []
