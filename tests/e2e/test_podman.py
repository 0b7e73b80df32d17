"""A real container runtime: podman 4.3 (CNI backend, runc) and buildah run containers on macvlan + host-local
+ route in the test's node netns (tests/beds/podman.py). Every podman call is a separate process, as an operator
would type them: the routes, the plugin's state and the container netns must follow the containers across them.
"""
import concurrent.futures
import json
import os
import re
import time

import pytest

from beds import runtime
from beds.podman import IMAGE, TIMEOUT, PodmanBed
from beds.topology import NODE_V4, PROTO, SHIM

VIA = ["10.96.0.0/12", "169.254.20.10/32"]
NODE_LOCAL = "169.254.20.10"  # a node-local DNS stand-in, on the node's lo
CNI_ROUTE_TABLE = ("inet", "cni_route")


@pytest.fixture
def bed(tmp_path, topo, route_plugin):
    try:
        podman = PodmanBed(tmp_path / "podman", topo, route_plugin)
    except runtime.SetupError as e:
        pytest.fail(str(e), pytrace=False)
    with podman:
        yield podman


def shim_routes(topo):
    """The node's IPv4 routes on the shim, by destination."""
    listing = topo.node_exec(["ip", "-json", "-4", "route", "show", "table", "main"], check=True, timeout=TIMEOUT)
    return {r["dst"]: r for r in json.loads(listing.stdout) if r.get("dev") == SHIM}


def routed(*ips):
    """What shim_routes must be for exactly these pod addresses: `<ip> dev eno1.host proto 201 scope link`."""
    return {ip: {"dst": ip, "dev": SHIM, "protocol": PROTO, "scope": "link", "flags": []} for ip in ips}


def container_json(sandbox, *argv):
    """`ip -json ARGV` in a container's netns (/run/netns/netns-<uuid>), with the node's iproute2."""
    return json.loads(runtime.run(["ip", "-n", os.path.basename(sandbox), "-json", *argv], timeout=TIMEOUT).stdout)


def nft_tables(topo):
    listing = json.loads(topo.node_exec(["nft", "-j", "list", "tables"], check=True, timeout=TIMEOUT).stdout)
    return [(item["table"]["family"], item["table"]["name"]) for item in listing["nftables"] if "table" in item]


def ping_from_node(topo, ip):
    return topo.node_exec(["ping", "-c", "1", "-W", "2", ip], timeout=TIMEOUT).returncode == 0


def ping_from(bed, container, ip):
    return bed.podman("exec", container, "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


def remove(bed, container):
    bed.podman("rm", "-f", "-t", "0", container)


def route_via_host_ready(topo):
    """What routeViaHost needs in the node: IP forwarding (of the node netns only) and a node-local address."""
    topo.node_exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=TIMEOUT)
    topo.node_exec(["ip", "addr", "add", f"{NODE_LOCAL}/32", "dev", "lo"], check=True, timeout=TIMEOUT)


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_podman_run_routes_the_container_and_pings_go_both_ways(bed, topo):
    net = bed.network("macvlan")
    assert shim_routes(topo) == {} and bed.attachments(net) == []
    cid = bed.run("web", net)
    ip = bed.address("web", net)
    assert shim_routes(topo) == routed(ip)
    assert bed.attachments(net) == [f"{cid}@eth0"]
    assert ping_from_node(topo, ip)
    assert ping_from(bed, "web", NODE_V4)


def test_podman_rm_in_a_later_call_removes_the_route_the_state_and_the_netns(bed, topo):
    net = bed.network("macvlan")
    cid = bed.run("web", net)
    ip, sandbox = bed.address("web", net), bed.sandbox("web")
    assert shim_routes(topo) == routed(ip) and bed.leases(net) == [ip]
    assert os.path.exists(sandbox) and bed.cni_results(net) == [f"{net}-{cid}-eth0"]
    remove(bed, "web")
    assert shim_routes(topo) == {}
    assert bed.attachments(net) == [] and bed.leases(net) == []
    assert not os.path.lexists(sandbox) and bed.cni_results(net) == []


def test_a_container_that_exits_is_cleaned_up_by_conmon(bed, topo):
    net = bed.network("macvlan")
    bed.run("job", net, command=["sh", "-c", "while [ ! -e /tmp/done ]; do sleep 0.1; done"])
    ip = bed.address("job", net)
    assert shim_routes(topo) == routed(ip)
    bed.podman("exec", "job", "touch", "/tmp/done")
    # No podman call from here on: the DEL comes from the `podman container cleanup` that conmon starts, with
    # the environment conmon hands it.
    assert wait_for(lambda: shim_routes(topo) == {} and bed.attachments(net) == []), shim_routes(topo)
    assert bed.inspect("job")["State"]["Status"] == "exited"


def test_stop_and_start_take_the_route_away_and_back(bed, topo):
    net = bed.network("macvlan")
    cid = bed.run("web", net)
    first, sandbox = bed.address("web", net), bed.sandbox("web")
    bed.podman("stop", "-t", "0", "web")
    assert shim_routes(topo) == {} and bed.attachments(net) == []
    assert bed.sandbox("web") == "" and not os.path.lexists(sandbox)
    bed.podman("start", "web")
    again = bed.address("web", net)
    assert shim_routes(topo) == routed(again), (first, again)
    assert bed.attachments(net) == [f"{cid}@eth0"]
    assert ping_from_node(topo, again) and ping_from(bed, "web", NODE_V4)


def test_five_parallel_runs_and_removals(bed, topo):
    net = bed.network("macvlan")
    names = [f"par{i}" for i in range(5)]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        ids = list(pool.map(lambda name: bed.run(name, net), names))
    ips = [bed.address(name, net) for name in names]
    assert len(set(ips)) == 5
    assert shim_routes(topo) == routed(*ips)
    assert bed.attachments(net) == sorted(f"{cid}@eth0" for cid in ids)
    assert all(ping_from_node(topo, ip) for ip in ips)
    assert all(ping_from(bed, name, NODE_V4) for name in names)
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda name: remove(bed, name), names))
    assert shim_routes(topo) == {}
    assert bed.attachments(net) == [] and bed.leases(net) == []


def test_network_reload_leaves_the_routes_right(bed, topo):
    net = bed.network("macvlan")
    names = ("a", "b")
    ids = [bed.run(name, net) for name in names]
    ips = {name: bed.address(name, net) for name in names}
    links = {name: container_json(bed.sandbox(name), "link", "show", "eth0")[0]["ifindex"] for name in names}
    # a route lost meanwhile (say, by a flush): the reload's ADD must put it back
    topo.node_exec(["ip", "route", "del", f"{ips['a']}/32", "dev", SHIM], check=True, timeout=TIMEOUT)
    assert shim_routes(topo) == routed(ips["b"])
    bed.podman("network", "reload", *names)
    # podman did DEL and ADD: new macvlan links, with the same addresses
    assert all(container_json(bed.sandbox(name), "link", "show", "eth0")[0]["ifindex"] != links[name]
               for name in names)
    assert {name: bed.address(name, net) for name in names} == ips
    assert shim_routes(topo) == routed(*ips.values())
    assert bed.attachments(net) == sorted(f"{cid}@eth0" for cid in ids)
    assert all(ping_from_node(topo, ip) for ip in ips.values())
    assert all(ping_from(bed, name, NODE_V4) for name in names)


def test_a_container_in_a_pod_is_routed_through_the_infra_container(bed, topo):
    net = bed.network("macvlan")
    infra = bed.create_pod("pod1", net)
    assert shim_routes(topo) == {}  # the pod's netns comes with its infra container's start
    bed.run("app", pod="pod1")
    ip, sandbox = bed.address("app", net), bed.sandbox("app")
    assert sandbox == bed.sandbox(infra)
    assert shim_routes(topo) == routed(ip)
    assert bed.attachments(net) == [f"{infra}@eth0"]
    assert ping_from(bed, "app", NODE_V4) and ping_from_node(topo, ip)
    bed.podman("pod", "rm", "-f", "-t", "0", "pod1")
    assert shim_routes(topo) == {}
    assert bed.attachments(net) == [] and bed.leases(net) == [] and not os.path.lexists(sandbox)


def test_route_via_host_in_a_podman_container(bed, topo):
    route_via_host_ready(topo)
    net = bed.network("via", routeViaHost=VIA)
    assert nft_tables(topo) == []
    bed.run("client", net)
    ip = bed.address("client", net)
    routes = container_json(bed.sandbox("client"), "route", "show")
    for dst in ("10.96.0.0/12", NODE_LOCAL):
        assert {"dst": dst, "gateway": NODE_V4, "dev": "eth0", "protocol": PROTO, "flags": []} in routes, routes
    assert nft_tables(topo) == [CNI_ROUTE_TABLE]
    rules = topo.node_exec(["nft", "list", "table", *CNI_ROUTE_TABLE], check=True, timeout=TIMEOUT).stdout
    for family in ("ip", "ip6"):  # the shim's rule per family (docs/services.md, "What is masqueraded")
        assert f'masquerade comment "{SHIM} {family}"' in rules, rules
    assert shim_routes(topo) == routed(ip)
    assert ping_from(bed, "client", NODE_LOCAL)  # through the shim to the node, and back by the pod's route
    remove(bed, "client")
    assert nft_tables(topo) == [] and shim_routes(topo) == {} and bed.attachments(net) == []


def test_buildah_run_with_a_cni_network(bed, topo):
    route_via_host_ready(topo)
    net = bed.network("via", routeViaHost=VIA)
    working = bed.buildah("from", IMAGE).stdout.strip()
    # The container shows its side, pings the node, then waits for the test to look from the node.
    script = (f"ip -o -4 addr show dev eth0; ip route; ping -c 1 -W 2 {NODE_V4} >/dev/null && echo pinged; "
              "echo ready; read x")
    with bed.buildah_run(net, working, "sh", "-c", script) as proc:
        seen = []
        for line in proc.stdout:
            seen.append(line.strip())
            if seen[-1] == "ready":
                break
        assert seen[-1:] == ["ready"] and "pinged" in seen, seen
        ip = re.search(r"inet ([\d.]+)/", seen[0])[1]
        assert f"10.96.0.0/12 via {NODE_V4} dev eth0" in seen
        assert shim_routes(topo) == routed(ip)
        [attachment] = bed.attachments(net)
        assert re.fullmatch(r"buildah-buildah\d+@eth0", attachment), attachment
        assert nft_tables(topo) == [CNI_ROUTE_TABLE]
        # buildah names the netns by a descriptor of its own process; the plugin entered it for the routes above
        assert re.fullmatch(r"/proc/\d+/fd/\d+", re.search(r"^# netns: (\S+)$", bed.route_log.read_text(), re.M)[1])
        assert ping_from_node(topo, ip)
        _, err = proc.communicate("done\n", timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert shim_routes(topo) == {} and bed.attachments(net) == [] and nft_tables(topo) == []
    bed.buildah("rm", working)
