"""Multus-made pods, for real: two attachments per pod through libcni, the cluster network on eth0 from the
reference `ptp` plugin (host-local 10.244.0.0/24 and fd44::/64, the pod's default routes through it) and
macvlan + host-local + route on net1 (no default route), as a NetworkAttachmentDefinition makes it.

The node must reach the pod on every interface from every node address, whatever its rp_filter, and the
replies (TCP, UDP, ICMP) leave by the interface their connection came in on (docs/multus.md). Both node
layouts of the issue: the master a dedicated NIC without an address (the node's address on eth1), and the
master the node's own NIC, its address in net1's subnet.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beds import libcni, netns, runtime, topology
from beds.libcni import ok, pod_ips
from beds.services import request
from beds.topology import (
    ELSEWHERE_GW4,
    ELSEWHERE_V4,
    ELSEWHERE_V6,
    LAN_V4,
    MASTER,
    NODE_V4,
    SECOND_NIC,
    SHIM,
    move_node_address,
)

PRIMARY_NET = "rtt-cluster"
SECONDARY_NET = "rtt-route"
CLUSTER_GW4, CLUSTER_GW6 = "10.244.0.1", "fd44::1"  # ptp gives the host side of each veth the gateway address
REPLY_TABLES = range(2010000, 2010000 + 2 ** 16)  # reply_paths.REPLY_TABLE + an ifindex

UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(60)
print("ready", flush=True)
while True:
    try:
        data, peer = s.recvfrom(100)
    except socket.timeout:
        break
    s.sendto(b"echo " + data + b" from " + peer[0].encode(), peer)
"""
UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[3], 0)); s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2]))); s.send(b"hello"); print(s.recv(200).decode())
"""


class Bed:
    """The node (topology.Topology) in one of the two layouts and the two networks' conflists."""

    def __init__(self, cni, topo, tmp_path, layout):
        self.cni, self.topo, self.state = cni, topo, tmp_path / "route-state"
        ptp = libcni.REFERENCE_PLUGINS / "ptp"
        if not ptp.exists():
            pytest.fail(f"reference plugin {ptp} missing (containernetworking-plugins)", pytrace=False)
        (Path(cni.cni_path) / "ptp").symlink_to(ptp)
        if layout == "dedicated-nic":
            move_node_address(topo)
            self.node_addresses = [ELSEWHERE_V4, ELSEWHERE_V6]
        else:
            self.node_addresses = [NODE_V4, topology.NODE_V6]
        self.node_addresses += [CLUSTER_GW4, CLUSTER_GW6]
        canary = {"type": "canary", "venv": sys.prefix}
        ptp_ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam-cluster"),
                    "ranges": [[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd44::/64"}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
        self.primary = self._conflist(tmp_path, PRIMARY_NET, [{"type": "ptp", "ipMasq": False, "ipam": ptp_ipam},
                                                               canary])
        macvlan_ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam-lan"),
                        "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": "192.168.1.2",
                                     "rangeEnd": "192.168.1.254"}],
                                   [{"subnet": "fd00::/64", "rangeStart": "fd00::100", "rangeEnd": "fd00::1ff"}]]}
        self.log = tmp_path / "route.log"
        route = {"type": "route", "master": MASTER, "bridge": SHIM, "stateDir": str(self.state),
                 "logFile": str(self.log)}
        self.secondary = self._conflist(tmp_path, SECONDARY_NET, [
            {"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": macvlan_ipam}, route, canary])

    @staticmethod
    def _conflist(tmp_path, name, plugins):
        path = tmp_path / f"{name}.conflist"
        path.write_text(json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))
        return path

    def add(self, pod, path, ifname):
        conf = self.primary if ifname == "eth0" else self.secondary
        return pod_ips(ok(self.cni.add(conf, path, self.cid(pod), ifname), f"ADD {ifname}"), ifname)

    def delete(self, pod, ifname):
        conf = self.primary if ifname == "eth0" else self.secondary
        ok(self.cni.delete(conf, pod, self.cid(pod), ifname), f"DEL {ifname}")

    def check(self, pod, ifname="net1"):
        return self.cni.check(self.secondary, pod, self.cid(pod), ifname)

    @staticmethod
    def cid(pod):
        return "ctr-" + os.path.basename(pod)

    def pod(self):
        """A pod of both attachments, the cluster network first (as Multus adds them): (pod, eth0's, net1's)."""
        pod, path = self.topo.add_pod()
        return pod, self.add(pod, path, "eth0"), self.add(pod, path, "net1")


@pytest.fixture(params=["dedicated-nic", "node-nic"])
def bed(request, cni, topo, tmp_path):
    return Bed(cni, topo, tmp_path, request.param)


def set_rp_filter(topo, value):
    """rp_filter on every interface of the test's node namespace, and for those made later (the kernel
    applies the larger of `all` and the interface's own value)."""
    links = json.loads(topo.node_exec(["ip", "-json", "link", "show"]).stdout)
    for name in ["all", "default", *(link["ifname"] for link in links)]:
        assert topo.node_exec(["sysctl", "-qw", f"net/ipv4/conf/{name}/rp_filter={value}"]).returncode == 0


def same_family(a, b):
    return (":" in a) == (":" in b)


def tcp_problems(bed, pod, pod_addresses, servers):
    """Every (node address, pod address) pair of a family whose TCP connect fails or comes from elsewhere."""
    servers(pod, "::", 8080)  # a wildcard socket (dual stack): a TCP reply's source is the connection's
    found = []
    for target in pod_addresses:
        for source in bed.node_addresses:
            if same_family(source, target):
                answer = request(bed.topo.node, target, 8080, source=source)
                if answer not in (f"echo hello from {source}", f"echo hello from ::ffff:{source}"):
                    found.append(f"tcp {source} -> {target}: {answer!r}")
    return found


def icmp_problems(bed, pod_addresses):
    return [f"ping {source} -> {target}" for target in pod_addresses for source in bed.node_addresses
            if same_family(source, target)
            and bed.topo.node_exec(["ping", "-c", "1", "-W", "2", "-I", source, target]).returncode != 0]


def udp_problems(bed, pod, pod_addresses, started):
    """UDP with the server bound to each pod address: its replies leave from the address the request came to."""
    found = []
    for port, target in enumerate(pod_addresses, 9000):
        proc = subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, "-c", UDP_SERVER, target, str(port)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        for source in bed.node_addresses:
            if same_family(source, target):
                answer = netns.ns_exec(bed.topo.node, [sys.executable, "-c", UDP_CLIENT, target, str(port), source],
                                       timeout=20).stdout.strip()
                if answer != f"echo hello from {source}":
                    found.append(f"udp {source} -> {target}: {answer!r}")
    return found


@pytest.fixture
def udp_servers():
    started = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("rp_filter", [0, 1, 2])
def test_the_node_reaches_every_interface_of_the_pod_from_every_address(bed, servers, udp_servers, rp_filter):
    set_rp_filter(bed.topo, rp_filter)
    pod, cluster, lan = bed.pod()
    set_rp_filter(bed.topo, rp_filter)  # the veth ptp made, the shim route made
    assert len(cluster) == 2 and len(lan) == 2, (cluster, lan)
    found = tcp_problems(bed, pod, cluster + lan, servers)
    found += icmp_problems(bed, cluster + lan)
    found += udp_problems(bed, pod, cluster + lan, udp_servers)
    assert found == []
    assert bed.check(pod)[0] == 0


def route_get(topo, pod, address):
    return json.loads(topo.pod_exec(pod, ["ip", "-json", "route", "get", address]).stdout)[0]


def test_what_the_pod_starts_goes_as_before(bed, servers):
    """To the LAN and the node through net1, from net1's address; everything else through the cluster network."""
    pod, cluster, lan = bed.pod()
    servers(bed.topo.lan, "::", 8081)
    assert request(pod, LAN_V4, 8081) == f"echo hello from ::ffff:{lan[0]}"
    assert request(pod, topology.LAN_V6, 8081) == f"echo hello from {lan[1]}"
    for node_address in bed.node_addresses[:2]:  # those the shim carries
        way = route_get(bed.topo, pod, node_address)
        assert (way["dev"], way["prefsrc"]) == ("net1", lan[0] if ":" not in node_address else lan[1])
    for elsewhere in ("10.99.0.1", "fd99::1"):
        way = route_get(bed.topo, pod, elsewhere)
        assert (way["dev"], way["prefsrc"]) == ("eth0", cluster[0] if ":" not in elsewhere else cluster[1])


def pod_state(topo, pod):
    """Everything of the pod's routing, as ip prints it: rules, every table's routes, addresses; read once no
    address is `tentative` (its duplicate address detection still running: the flag goes by itself)."""
    commands = [["rule"], ["-6", "rule"], ["route", "show", "table", "all"], ["-6", "route", "show", "table", "all"],
                ["addr"]]
    deadline = time.monotonic() + 10
    while "tentative" in runtime.run(["ip", "-n", pod, "addr"]).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    return "\n".join(runtime.run(["ip", "-n", pod, *argv]).stdout for argv in commands)


def reply_paths(topo, pod):
    """Our rules and the routes of our tables in the pod."""
    found = []
    for family in ("-4", "-6"):
        for what in (["rule"], ["route", "show", "table", "all"]):
            found += [obj for obj in json.loads(topo.pod_exec(pod, ["ip", family, "-json", *what]).stdout)
                      if str(obj.get("table", "")).isdigit() and int(obj["table"]) in REPLY_TABLES]
    return found


def test_del_of_net1_puts_the_pod_back_as_it_was(bed):
    pod, path = bed.topo.add_pod()
    bed.add(pod, path, "eth0")
    before = pod_state(bed.topo, pod)
    bed.add(pod, path, "net1")
    assert reply_paths(bed.topo, pod) != []
    bed.delete(pod, "net1")
    assert pod_state(bed.topo, pod) == before


def test_route_replay_takes_every_line_the_add_logged(bed, route_plugin):
    pod, _, _ = bed.pod()
    proc = subprocess.run(libcni.person_argv(bed.topo.node, route_plugin, "replay", "--command", "ADD", "--dry-run",
                                             str(bed.log)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "refused" not in proc.stdout, proc
    assert " rule add from " in proc.stdout and " table 2010" in proc.stdout
    assert " -6 rule add from " in proc.stdout and " onlink " in proc.stdout


@pytest.mark.parametrize("first", ["eth0", "net1"])
def test_both_dels_in_either_order_leave_nothing(bed, first):
    pod, path = bed.topo.add_pod()
    fresh = pod_state(bed.topo, pod)
    bed.add(pod, path, "eth0")
    bed.add(pod, path, "net1")
    assert reply_paths(bed.topo, pod) != []
    bed.delete(pod, first)
    bed.delete(pod, "net1" if first == "eth0" else "eth0")
    assert reply_paths(bed.topo, pod) == []
    assert pod_state(bed.topo, pod).replace("DOWN", "") == fresh.replace("DOWN", "")  # (lo's state aside)
    assert list((bed.state / "networks" / SECONDARY_NET / "attachments").iterdir()) == []


def test_check_names_a_missing_reply_path(bed):
    pod, cluster, _ = bed.pod()
    assert bed.check(pod)[0] == 0
    table = next(r["table"] for r in reply_paths(bed.topo, pod) if r.get("src") == cluster[0])
    assert bed.topo.pod_exec(pod, ["ip", "rule", "del", "from", cluster[0], "lookup", table]).returncode == 0
    rc, out, _ = bed.check(pod)
    assert rc != 0 and f"no rule from {cluster[0]} lookup {table}" in out["msg"], out


def test_check_of_net1_after_the_cluster_networks_del_passes(bed):
    """Either DEL may come first (docs/multus.md): eth0's took eth0, and the pod left with net1 alone needs no
    reply path; net1's own DEL then leaves nothing."""
    pod, _, _ = bed.pod()
    bed.delete(pod, "eth0")
    rc, out, err = bed.check(pod)
    assert rc == 0, (out, err)
    bed.delete(pod, "net1")
    assert reply_paths(bed.topo, pod) == []


def test_a_route_in_a_reply_table_that_route_did_not_make_is_neither_taken_nor_deleted(bed):
    """Someone's route in the table route uses for eth0 (2010000 + its ifindex), to a destination route copies
    there: ADD leaves it (proto static), and net1's DEL does not delete it."""
    pod, path = bed.topo.add_pod()
    bed.add(pod, path, "eth0")
    [eth0] = json.loads(bed.topo.pod_exec(pod, ["ip", "-json", "link", "show", "eth0"]).stdout)
    table = str(2010000 + eth0["ifindex"])
    theirs = [CLUSTER_GW4, "dev", "eth0", "scope", "link", "table", table, "proto", "static"]
    assert bed.topo.pod_exec(pod, ["ip", "route", "add", *theirs]).returncode == 0

    def in_their_table():
        return [(r["dst"], r.get("protocol")) for r in json.loads(bed.topo.pod_exec(
            pod, ["ip", "-json", "route", "show", "table", table]).stdout) if r["dst"] == CLUSTER_GW4]

    bed.add(pod, path, "net1")
    assert in_their_table() == [(CLUSTER_GW4, "static")]
    assert bed.check(pod)[0] == 0
    bed.delete(pod, "net1")
    assert in_their_table() == [(CLUSTER_GW4, "static")]


def test_a_pod_with_one_interface_gets_no_rules_or_tables(bed):
    pod, path = bed.topo.add_pod()
    fresh_rules = bed.topo.pod_exec(pod, ["ip", "rule"]).stdout
    bed.add(pod, path, "net1")
    assert reply_paths(bed.topo, pod) == []
    assert bed.topo.pod_exec(pod, ["ip", "rule"]).stdout == fresh_rules


MOVED_V4 = "10.20.0.7"  # the node's address on eth1 after a DHCP renewal


def move_the_node_address_on_eth1(topo):
    for argv in (["addr", "del", f"{ELSEWHERE_V4}/24", "dev", SECOND_NIC],
                 ["addr", "add", f"{MOVED_V4}/24", "dev", SECOND_NIC],
                 ["route", "replace", "default", "via", ELSEWHERE_GW4]):  # it went with the address
        assert topo.node_exec(["ip", *argv]).returncode == 0, argv


def through(reply_routes, address):
    return [r for r in reply_routes if address in (r.get("dst"), r.get("gateway"))]


def test_reconcile_after_the_node_address_on_another_nic_changed_and_a_later_del_leave_no_reply_route_to_it(
        cni, topo, tmp_path, route_plugin):
    bed = Bed(cni, topo, tmp_path, "dedicated-nic")
    pod, _, _ = bed.pod()
    assert through(reply_paths(topo, pod), ELSEWHERE_V4) != []
    move_the_node_address_on_eth1(topo)
    code, err = reconcile(bed, route_plugin)
    assert code == 0, err
    assert through(reply_paths(topo, pod), ELSEWHERE_V4) == []
    assert through(reply_paths(topo, pod), MOVED_V4) != []
    bed.delete(pod, "net1")
    assert reply_paths(topo, pod) == []


def test_dry_runs_leave_the_pods_rules_and_reply_tables_as_they_are(cni, topo, tmp_path, route_plugin):
    """`reconcile --dry-run` after the node's address changed, and an ADD of net1 whose route has dryRun."""
    bed = Bed(cni, topo, tmp_path, "dedicated-nic")
    pod, path = topo.add_pod()
    bed.add(pod, path, "eth0")
    rules = [topo.pod_exec(pod, ["ip", family, "rule"]).stdout for family in ("-4", "-6")]
    dry = json.loads(bed.secondary.read_text())
    dry["plugins"][1]["dryRun"] = True
    bed.secondary.write_text(json.dumps(dry))
    bed.add(pod, path, "net1")
    assert reply_paths(topo, pod) == []
    assert [topo.pod_exec(pod, ["ip", family, "rule"]).stdout for family in ("-4", "-6")] == rules
    bed.delete(pod, "net1")
    dry["plugins"][1]["dryRun"] = False
    bed.secondary.write_text(json.dumps(dry))
    bed.add(pod, path, "net1")
    before = pod_state(topo, pod)
    move_the_node_address_on_eth1(topo)
    code, err = reconcile(bed, route_plugin, "--dry-run", "--log-file", "-")
    assert code == 1 and "dry-run, not run: nsenter" in err, err
    assert pod_state(topo, pod) == before


def doctor(bed, route_plugin):
    """{subject: check} of `route doctor --json` on the node, for the secondary network."""
    argv = libcni.person_argv(bed.topo.node, route_plugin, "doctor", "--json", "--conflist", str(bed.secondary),
                              "--state-dir", str(bed.state))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1) and proc.stderr == "", proc
    return {c["subject"]: c for c in json.loads(proc.stdout)["checks"]}


def test_doctor_names_a_pod_whose_replies_leave_by_another_interface(bed, route_plugin):
    pod, cluster, _ = bed.pod()
    subject = f"pod {bed.cid(pod)}@net1 reply paths"
    assert doctor(bed, route_plugin)[subject]["verdict"] == "OK"
    table = next(r["table"] for r in reply_paths(bed.topo, pod) if r.get("src") == cluster[0])
    assert bed.topo.pod_exec(pod, ["ip", "rule", "del", "from", cluster[0], "lookup", table]).returncode == 0
    check = doctor(bed, route_plugin)[subject]
    assert check["verdict"] == "FAIL", check
    assert f"to {bed.node_addresses[0]} from {cluster[0]} (eth0) out of net1" in check["found"], check


def test_podman_with_a_cluster_and_a_secondary_network(tmp_path, topo, route_plugin):
    """The same shape from a real runtime: a container on the cluster network (eth0 from ptp), then `podman
    network connect` of the secondary one (eth1: macvlan + route, no default route). The node pings both of the
    container's addresses from each of its own; `podman network disconnect` leaves the container's routing as it
    was before the connect. (`podman run --network cluster,lan` would do: podman 4.3 sets a container's
    networks up in no fixed order, and when the secondary one comes first, route's ADD sees one interface.)"""
    from beds.podman import PodmanBed

    try:
        bed = PodmanBed(tmp_path / "podman", topo, route_plugin)
    except runtime.SetupError as e:
        pytest.fail(str(e), pytrace=False)
    with bed:
        (Path(bed.cni_path) / "ptp").symlink_to(libcni.REFERENCE_PLUGINS / "ptp")
        cluster, lan = f"rtt-cluster-{bed.tag}", f"rtt-lan-{bed.tag}"
        ptp_ipam = {"type": "host-local", "dataDir": str(bed.root / "ipam"), "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": "10.244.0.0/24", "gateway": CLUSTER_GW4}]]}
        macvlan_ipam = {"type": "host-local", "dataDir": str(bed.root / "ipam"),
                        "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": "192.168.1.2",
                                     "rangeEnd": "192.168.1.254"}]]}
        route = {"type": "route", "master": MASTER, "bridge": SHIM, "stateDir": str(bed.route_state),
                 "logFile": str(bed.route_log)}
        canary = {"type": "canary", "venv": sys.prefix}
        for name, plugins in ((cluster, [{"type": "ptp", "ipMasq": False, "ipam": ptp_ipam}, canary]),
                              (lan, [{"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": macvlan_ipam},
                                     route, canary])):
            (bed.conf_dir / f"{name}.conflist").write_text(
                json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))
        cid = bed.run("web", cluster)
        sandbox = os.path.basename(bed.sandbox("web"))
        before = pod_state(topo, sandbox)
        bed.podman("network", "connect", lan, "web")
        addresses = [bed.address("web", cluster), bed.address("web", lan)]
        assert addresses[0].startswith("10.244.0.") and addresses[1].startswith("192.168.1."), addresses
        assert bed.attachments(lan) == [f"{cid}@eth1"]
        unanswered = [f"{source} -> {target}" for target in addresses for source in (NODE_V4, CLUSTER_GW4)
                      if topo.node_exec(["ping", "-c", "1", "-W", "2", "-I", source, target]).returncode != 0]
        assert unanswered == []
        bed.podman("network", "disconnect", lan, "web")
        assert bed.attachments(lan) == []
        assert pod_state(topo, sandbox) == before
        assert [r for r in json.loads(topo.node_exec(["ip", "-json", "route"]).stdout) if r.get("dev") == SHIM] == []


def reconcile(bed, route_plugin, *options):
    """One `route reconcile` pass on the node, with `options`: (exit status, its report)."""
    proc = subprocess.run(libcni.person_argv(bed.topo.node, route_plugin, "reconcile", "--state-dir", str(bed.state),
                                             "--log-file", str(bed.log.with_name("reconcile.log")), *options),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def ours(topo, pod):
    """route's routes (every table) and reply rules in the pod."""
    return [obj for obj in reply_paths(topo, pod) if "priority" in obj] + [
        obj for family in ("-4", "-6") for obj in json.loads(
            topo.pod_exec(pod, ["ip", family, "-json", "route", "show", "table", "all"]).stdout)
        if obj.get("protocol") == "201"]


@pytest.mark.parametrize("bed", ["dedicated-nic"], indirect=True)
def test_a_cluster_interface_named_x_at_y_goes_through_add_reconcile_and_del(bed, route_plugin):
    """`x@y` is a name Linux takes: the reply paths name it, the record keeps it and is read back, so the pass
    puts the pod's node route back and DEL removes the reply rules."""
    pod, path = bed.topo.add_pod()
    ok(bed.cni.add(bed.primary, path, bed.cid(pod), "x@y"), "ADD x@y")
    [lan, _] = bed.add(pod, path, "net1")
    assert any(r.get("dev") == "x@y" for r in reply_paths(bed.topo, pod))
    assert reconcile(bed, route_plugin) == (0, f"route reconcile: {SHIM}: in shape\n")
    assert bed.topo.node_exec(["ip", "route", "del", lan, "dev", SHIM]).returncode == 0
    code, report = reconcile(bed, route_plugin)
    assert code == 0 and f"{SHIM}: repaired" in report, report
    assert bed.topo.node_exec(["ip", "route", "show", lan, "dev", SHIM]).stdout.strip(), report
    assert bed.check(pod)[0] == 0
    replayed = subprocess.run(libcni.person_argv(bed.topo.node, route_plugin, "replay", "--command", "ADD",
                                                 "--dry-run", str(bed.log)), capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0 and "refused" not in replayed.stdout and " dev x@y " in replayed.stdout, replayed
    bed.delete(pod, "net1")
    assert reply_paths(bed.topo, pod) == []


@pytest.mark.parametrize("bed", ["dedicated-nic"], indirect=True)
def test_a_namespace_made_again_at_the_pods_path_gets_nothing_of_the_dead_pod(bed, route_plugin):
    """The runtime crashed: the pod's namespace is gone without a DEL, and a new one is made at the same path,
    the kernel giving it the freed inode number, with interfaces of the same names and addresses. The pass
    names it as another namespace and writes none of the dead pod's routes or rules into it."""
    pod, cluster, lan = bed.pod()
    assert ours(bed.topo, pod)
    [record] = (bed.state / "networks" / SECONDARY_NET / "attachments").iterdir()
    path = json.loads(record.read_text())["netns"]
    netns.remake_at_the_same_inode(pod)
    for ifname, addresses in (("eth0", cluster), ("net1", lan)):
        peer = f"p-{ifname}"
        for argv in (["link", "add", ifname, "type", "veth", "peer", "name", peer], ["link", "set", ifname, "up"],
                     ["link", "set", peer, "up"],
                     *(["addr", "add", f"{a}/{64 if ':' in a else 24}", "dev", ifname, "nodad"] for a in addresses)):
            assert bed.topo.pod_exec(pod, ["ip", *argv]).returncode == 0, argv
    code, report = reconcile(bed, route_plugin)
    assert code == 1 and f"pod {bed.cid(pod)}@net1: {path} is another network namespace now" in report, report
    assert ours(bed.topo, pod) == []
