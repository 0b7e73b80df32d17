"""What an adversarial review broke, each in real namespaces against the plugin a node runs.

Every test here failed before its fix. The promises they hold the plugin to (docs/): DEL never fails, nothing
changes on bad input, a log that cannot be written never fails the call, `route replay` runs only what the
plugin logs, the plugin never deletes a route another pod owns.
"""
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_faults import call, config, our_routes, state_files

from beds.libcni import add_pod, ok, pod_ips
from beds.netns import netns_path
from beds.topology import MASTER, SHIM, node_sysctl

VIA = ["10.96.0.0/12"]


def in_network(conf, name):
    return {**conf, "name": name}


def node_state(topo):
    """What bad input must not change: links with their addresses, routes, the nft ruleset."""
    return (topo.node_exec(["ip", "-json", "-d", "link", "show"]).stdout,
            sorted(r["dst"] for r in json.loads(topo.node_exec(["ip", "-json", "route", "show"]).stdout or "[]")),
            topo.node_exec(["nft", "list", "ruleset"]).stdout)


def global_addresses(topo, dev):
    link = json.loads(topo.node_exec(["ip", "-json", "addr", "show", "dev", dev]).stdout)[0]
    return sorted((a["family"], a["local"], a["prefixlen"]) for a in link["addr_info"] if a.get("scope") == "global")


# --- 1. ownership of an address is per node, not per network -------------------------------------------------

@pytest.mark.parametrize("late", ["DEL", "GC"])
def test_a_late_del_or_gc_of_another_network_leaves_the_new_owners_route(topo, route_plugin, tmp_path, late):
    """A pool shared by networks a and b: 192.168.1.50 moves from a's pod to b's; a's late DEL or GC must
    not cut b's pod off."""
    conf = config(tmp_path, prev=["192.168.1.50/16"])
    assert call(topo, route_plugin, "ADD", in_network(conf, "rtt-a"), container_id="old")[0] == 0
    assert call(topo, route_plugin, "ADD", in_network(conf, "rtt-b"), container_id="new")[0] == 0
    if late == "DEL":
        code, out, err = call(topo, route_plugin, "DEL", in_network(conf, "rtt-a"), container_id="old")
    else:
        gc = in_network(config(tmp_path, **{"cni.dev/valid-attachments": []}), "rtt-a")
        code, out, err = call(topo, route_plugin, "GC", gc)
    assert code == 0, (out, err)
    assert our_routes(topo) == ["192.168.1.50"]
    code, out, err = call(topo, route_plugin, "CHECK", in_network(conf, "rtt-b"), container_id="new")
    assert code == 0, (out, err)
    assert call(topo, route_plugin, "DEL", in_network(conf, "rtt-b"), container_id="new")[0] == 0
    assert our_routes(topo) == [] and state_files(tmp_path) == []


def test_ownership_recorded_per_network_by_an_older_version_is_honoured(topo, route_plugin, tmp_path):
    """State from before the fix: networks/NET/ips/ADDRESS. The newest claim of an address wins."""
    conf = config(tmp_path, prev=["192.168.1.51/16"])
    assert call(topo, route_plugin, "ADD", in_network(conf, "rtt-a"), container_id="old")[0] == 0
    assert call(topo, route_plugin, "ADD", in_network(conf, "rtt-b"), container_id="new")[0] == 0
    state = tmp_path / "state"
    claim = state / "ips" / "192.168.1.51"
    assert claim.read_text() == "rtt-b/new@eth0"
    claim.unlink()  # as an older version left it: one claim per network, the newest is b's
    for network, owner, age in (("rtt-a", "old@eth0", 100), ("rtt-b", "new@eth0", 10)):
        legacy = state / "networks" / network / "ips" / "192.168.1.51"
        legacy.parent.mkdir(parents=True, exist_ok=True)
        legacy.write_text(owner)
        os.utime(legacy, (legacy.stat().st_mtime - age,) * 2)
    assert call(topo, route_plugin, "DEL", in_network(conf, "rtt-a"), container_id="old")[0] == 0
    assert our_routes(topo) == ["192.168.1.51"]
    assert claim.read_text() == "rtt-b/new@eth0"
    assert not list(state.glob("networks/*/ips/*"))


# --- 2, 3. a FIFO where a namespace or the log should be -----------------------------------------------------

def test_a_fifo_as_cni_netns_is_refused_at_once(topo, route_plugin, tmp_path):
    fifo = tmp_path / "netns-fifo"
    os.mkfifo(fifo)
    before = node_state(topo)
    for verb in ("ADD", "CHECK"):
        code, out, err = call(topo, route_plugin, verb, config(tmp_path, prev=["192.168.2.5/16"]), timeout=30,
                              netns=str(fifo))
        assert code == 1 and out["code"] == 4 and "not a network namespace" in out["details"], (verb, out, err)
    assert node_state(topo) == before


def test_del_with_a_fifo_as_cni_netns_and_route_via_host_succeeds(topo, cni, chain, route_plugin, tmp_path):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA, ipTimeoutSeconds=3)
    pod, result = add_pod(cni, conf)
    fifo = tmp_path / "netns-fifo"
    os.mkfifo(fifo)
    route = json.loads(conf.read_text())["plugins"][1]
    code, out, err = call(topo, route_plugin, "DEL", {"cniVersion": "1.0.0", "name": "rtt-route", **route},
                          timeout=30, netns=str(fifo), container_id=cni.default_container_id(pod))
    assert code == 0, (out, err)
    assert our_routes(topo) == []


def test_a_fifo_as_log_file_never_blocks_nor_fails_the_call(topo, route_plugin, tmp_path):
    fifo = tmp_path / "log-fifo"
    os.mkfifo(fifo)
    conf = config(tmp_path, prev=["192.168.2.6/16"], logFile=str(fifo))
    code, out, err = call(topo, route_plugin, "ADD", conf, timeout=30)
    assert code == 0 and out["ips"], (out, err)
    assert "cannot write log" in err and "ip route replace 192.168.2.6/32" in err  # the block is not lost
    assert call(topo, route_plugin, "DEL", conf, timeout=30)[0] == 0


# --- 4. long container IDs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [236, 248])
def test_long_container_ids_through_libcni(topo, cni, chain, tmp_path, length):
    """As long as libcni takes them: its cache file `NETWORK-ID-IFNAME` must fit in a file name."""
    conf = chain(name="n")
    pod, path = topo.add_pod()
    cid = "c" * length
    ip = pod_ips(ok(cni.add(conf, path, cid), "ADD"))[0]
    ok(cni.check(conf, path, cid), "CHECK")
    assert our_routes(topo) == [ip]
    ok(cni.delete(conf, path, cid), "DEL")
    assert our_routes(topo) == []
    assert not [p for p in (tmp_path / "ipam").rglob("*") if p.name == ip], "host-local kept the address"
    assert not [p for p in (tmp_path / "route-state").rglob("*.json")]


@pytest.mark.parametrize("length", [300, 5000])
def test_container_ids_longer_than_a_file_name(topo, route_plugin, tmp_path, length):
    cid = "x" * length
    conf = config(tmp_path, prev=["192.168.2.7/16"])
    for verb in ("ADD", "CHECK", "DEL"):
        code, out, err = call(topo, route_plugin, verb, conf, container_id=cid)
        assert code == 0, (verb, out, err)
    assert our_routes(topo) == [] and state_files(tmp_path) == []
    assert call(topo, route_plugin, "ADD", conf, container_id=cid)[0] == 0
    gc = config(tmp_path, **{"cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"}]})
    assert call(topo, route_plugin, "GC", gc)[0] == 0
    assert our_routes(topo) == ["192.168.2.7"]  # still valid: kept
    assert call(topo, route_plugin, "GC", config(tmp_path, **{"cni.dev/valid-attachments": []}))[0] == 0
    assert our_routes(topo) == [] and state_files(tmp_path) == []


# --- 5, 6. route replay runs only what the plugin logs -------------------------------------------------------

def replay(topo, route_plugin, log):
    return topo.node_exec([str(route_plugin), "replay", "--keep-going", str(log)], timeout=60)


def test_replay_refuses_an_nft_command_chained_with_a_semicolon(topo, route_plugin, tmp_path):
    assert topo.node_exec(["nft", "add", "table", "ip", "victim"]).returncode == 0
    log = tmp_path / "route.log"
    log.write_text("# == route 0.1.0 | 2026-01-01T00:00:00.000Z | ADD | pid 1\n"
                   "nft add table inet cni_route ';' delete table ip victim\n"
                   "nft add table inet cni_route \\; delete table ip victim\n")
    proc = replay(topo, route_plugin, log)
    assert proc.returncode == 1 and proc.stdout.count("refused") == 2, proc.stdout
    assert "table ip victim" in topo.node_exec(["nft", "list", "tables"]).stdout


LINE_BREAKS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKS])
def test_no_header_value_becomes_a_command_for_replay(topo, route_plugin, tmp_path, brk):
    """CNI_NETNS (never checked for DEL) and GC's CNI_CONTAINERID reach the log's header."""
    log = tmp_path / "route.log"
    conf = config(tmp_path, logFile=str(log))
    evil = f"{brk}ip link del {MASTER}{brk}"
    call(topo, route_plugin, "DEL", conf, CNI_NETNS=f"/x{evil}")
    call(topo, route_plugin, "GC", {**conf, "cni.dev/valid-attachments": []}, CNI_CONTAINERID=f"c{evil}")
    proc = replay(topo, route_plugin, log)
    assert "ip link del" not in "".join(line for line in proc.stdout.splitlines(True) if not line.startswith("#"))
    assert topo.node_exec(["ip", "link", "show", MASTER]).returncode == 0
    assert subprocess.run(["sh", "-n", str(log)]).returncode == 0


# --- 7. IPv6 off by default for new devices ------------------------------------------------------------------

def test_default_disable_ipv6_does_not_stop_the_shim_copying_the_masters_ipv6(topo, cni, chain):
    node_sysctl(topo, "net.ipv6.conf.default.disable_ipv6", 1)
    pod, result = add_pod(cni, chain())
    assert "UP" in cni.shim_link()["flags"]
    assert global_addresses(topo, SHIM) == global_addresses(topo, MASTER)
    ok(cni.check(chain(), pod), "CHECK")
    assert cni.ping_from_node(pod_ips(result)[0])


# --- 8. routeViaHost on a node without nft -------------------------------------------------------------------

def test_route_via_host_without_nft_is_refused_before_any_change(topo, route_plugin, tmp_path):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("ip", "nsenter", "python3", "sysctl"):
        os.symlink(shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin"), bin_dir / program)
    conf = config(tmp_path, prev=["192.168.2.8/16"], routeViaHost=VIA)
    before = node_state(topo)
    code, out, err = call(topo, route_plugin, "ADD", conf, PATH=str(bin_dir))
    assert code == 1 and out["code"] == 105 and "nft" in out["msg"], (out, err)
    assert node_state(topo) == before and state_files(tmp_path) == []
    code, out, err = call(topo, route_plugin, "STATUS", conf, PATH=str(bin_dir))
    assert code == 1 and out["code"] == 50 and "nft" in out["msg"], (out, err)
    assert call(topo, route_plugin, "DEL", conf, PATH=str(bin_dir))[0] == 0


def test_del_without_nft_after_an_add_with_it_succeeds(topo, cni, chain, route_plugin, tmp_path):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA)
    pod, _ = add_pod(cni, conf)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("ip", "nsenter", "python3"):
        os.symlink(shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin"), bin_dir / program)
    route = json.loads(conf.read_text())["plugins"][1]
    code, out, err = call(topo, route_plugin, "DEL", {"cniVersion": "1.0.0", "name": "rtt-route", **route},
                          PATH=str(bin_dir), netns=netns_path(pod), container_id=cni.default_container_id(pod))
    assert code == 0, (out, err)
    assert our_routes(topo) == []


# --- 9. one odd record does not stop DEL or GC ---------------------------------------------------------------

def test_a_record_with_an_integer_prefix_stops_neither_del_nor_gc(topo, route_plugin, tmp_path):
    for i, cid in enumerate(("stale1", "stale2")):
        conf = config(tmp_path, prev=[f"192.168.4.{i + 2}/16"])
        assert call(topo, route_plugin, "ADD", conf, container_id=cid)[0] == 0
    records = tmp_path / "state" / "networks" / "rtt-faults" / "attachments"
    for cid in ("bad", "aaa"):  # "aaa" sorts before the stale ones: GC meets it first
        (records / f"{cid}@eth0.json").write_text(json.dumps(
            {"containerID": cid, "ifname": "eth0", "network": "rtt-faults", "master": MASTER, "bridge": SHIM,
             "prefixes": [5], "viaHost": []}))
    code, out, err = call(topo, route_plugin, "DEL", config(tmp_path), container_id="bad")
    assert code == 0, (out, err)
    code, out, err = call(topo, route_plugin, "GC", config(tmp_path, **{"cni.dev/valid-attachments": []}))
    assert code == 0, (out, err)
    assert our_routes(topo) == [] and state_files(tmp_path) == []


# --- 10. a prevResult with thousands of IPs ------------------------------------------------------------------

def many(count, base="192.168.{}.{}/16"):
    return [base.format(10 + i // 250, 1 + i % 250) for i in range(count)]


def test_a_prev_result_with_too_many_ips_is_refused_before_any_change(topo, route_plugin, tmp_path):
    before = node_state(topo)
    for verb in ("ADD", "CHECK"):
        code, out, err = call(topo, route_plugin, verb, config(tmp_path, prev=many(10000)))
        assert code == 1 and out["code"] == 7 and "at most" in out["details"], (verb, out, err)
    assert node_state(topo) == before and state_files(tmp_path) == []


def test_del_with_thousands_of_ips_and_routes_reads_the_routes_once(topo, route_plugin, tmp_path):
    """10,000 routes to the same addresses on the node (not ours) and a DEL whose prevResult names them all:
    one lookup per IP took minutes (every ip timed out: 101); the plugin's own few routes must go."""
    conf = config(tmp_path, prev=many(10), ipTimeoutSeconds=5)
    assert call(topo, route_plugin, "ADD", conf)[0] == 0
    batch = "".join(f"route add {p.split('/')[0]}/32 dev {MASTER} proto static\n" for p in many(10000)[10:])
    assert topo.node_exec(["ip", "-batch", "-"], input=batch).returncode == 0
    code, out, err = call(topo, route_plugin, "DEL", config(tmp_path, prev=many(10000), ipTimeoutSeconds=5),
                          timeout=120)
    assert code == 0, (out, err)
    assert our_routes(topo) == []


# --- also seen -----------------------------------------------------------------------------------------------

def test_parallel_add_and_del_of_one_container_leave_route_and_record_together(topo, route_plugin, tmp_path):
    conf = config(tmp_path, prev=["192.168.2.10/16"])
    record = tmp_path / "state" / "networks" / "rtt-faults" / "attachments" / "c1@eth0.json"
    for round_ in range(20):
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda verb: call(topo, route_plugin, verb, conf), ("ADD", "DEL")))
        assert [r[0] for r in results] == [0, 0], results
        assert (our_routes(topo) == ["192.168.2.10"]) == record.exists(), f"round {round_}: route without record"
        assert call(topo, route_plugin, "DEL", conf)[0] == 0


def test_check_compares_the_masquerade_rule_itself(topo, cni, chain):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=VIA)
    pod, _ = add_pod(cni, conf)
    ok(cni.check(conf, pod), "CHECK")
    listing = json.loads(topo.node_exec(["nft", "-j", "list", "chain", "inet", "cni_route", "postrouting"]).stdout)
    handle = next(i["rule"]["handle"] for i in listing["nftables"] if "rule" in i)
    assert topo.node_exec(["nft", "replace", "rule", "inet", "cni_route", "postrouting", "handle", str(handle),
                           "iifname", f'"{SHIM}"', "accept", "comment", f'"{SHIM}"']).returncode == 0
    code, out, _ = cni.check(conf, pod)
    assert code != 0 and out["code"] == 103 and "masquerade" in out["msg"], out


@pytest.mark.parametrize("address", ["255.255.255.255/32", "192.168.255.255/16", "224.0.0.5/4", "127.0.0.2/8",
                                     "0.0.0.0/8", "169.254.1.1/16", "fe80::5/64", "ff02::1/16", "::1/128", "::/64"])
def test_a_pod_address_that_is_not_unicast_is_refused_before_any_change(topo, route_plugin, tmp_path, address):
    before = node_state(topo)
    code, out, err = call(topo, route_plugin, "ADD", config(tmp_path, prev=[address]))
    assert code == 1 and out["code"] == 7 and "prevResult.ips[0].address" in out["msg"], (out, err)
    assert node_state(topo) == before and state_files(tmp_path) == []


def test_add_puts_back_the_routes_of_every_pod_when_it_finds_the_shim_down(topo, cni, chain):
    conf = chain()
    pods = [add_pod(cni, conf) for _ in range(2)]
    assert topo.node_exec(["ip", "link", "set", "dev", SHIM, "down"]).returncode == 0  # the kernel drops its routes
    assert our_routes(topo) == []
    add_pod(cni, conf)
    for pod, result in pods:
        ok(cni.check(conf, pod), f"CHECK {pod}")
        assert cni.ping_from_node(pod_ips(result)[0])
    assert len(our_routes(topo)) == 3


# --- found by our own review ------------------------------------------------------------------------------------

def test_a_master_that_is_itself_a_macvlan(topo, route_plugin, tmp_path):
    """The kernel puts a macvlan made on a macvlan on that one's own lower device, and ip names that as its
    link: the second ADD took its own shim for a foreign device (102), and CHECK failed (103)."""
    for argv in (["ip", "link", "add", "mv0", "link", MASTER, "type", "macvlan", "mode", "bridge"],
                 ["ip", "addr", "add", "192.168.0.9/16", "dev", "mv0"], ["ip", "link", "set", "mv0", "up"]):
        assert topo.node_exec(argv).returncode == 0
    conf = config(tmp_path, prev=["192.168.2.11/16"], master="mv0")
    for verb in ("ADD", "ADD", "CHECK", "STATUS", "DEL"):
        code, out, err = call(topo, route_plugin, verb, conf)
        assert code == 0, (verb, out, err)


@pytest.mark.parametrize("name", ["up", "mtu", "name"])
def test_a_shim_named_like_an_ip_keyword(topo, route_plugin, tmp_path, name):
    """`ip link add up link eno1 ...` made a macvlan named macvlan0 and set it up, once per ADD."""
    conf = config(tmp_path, prev=["192.168.2.12/16"], bridge=name)
    for verb in ("ADD", "ADD", "CHECK", "DEL"):
        code, out, err = call(topo, route_plugin, verb, conf)
        assert code == 0, (verb, out, err)
    kinds = {link["ifname"]: link.get("linkinfo", {}).get("info_kind")
             for link in json.loads(topo.node_exec(["ip", "-json", "-d", "link", "show"]).stdout)}
    assert [n for n, kind in kinds.items() if kind == "macvlan"] == [name]
