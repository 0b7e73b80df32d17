"""Issue #13 at the unit level: what schemas/config.json promises (every bound and pattern, through the entry
point), the refusals of route replay and the journal's escaping, and the faults only e2e races caught before
(a timeout's code, the lock's exclusivity)."""
import fcntl
import io
import json
import os
import threading
import time

import pytest
from helpers import POD_NETNS, call, netconf, prev_result

from cniroute import journal, lock, plugin, replay
from cniroute.errors import CommandTimeout, TryAgainLater
from cniroute.journal import Journal, append_block, parse_log
from cniroute.records import Attachment
from cniroute.store import MAX_STEM, Store, file_stem


def refused(monkeypatch, host, conf, code, field, command="ADD", **env):
    rc, out, err = call(monkeypatch, host, command, conf, **env)
    assert rc == 1 and out["code"] == code and field in out["msg"], out
    assert host.changes() == []
    return out


def long_path(tmp_path, name, length):
    """An absolute path under tmp_path of exactly `length` characters (components short enough to exist)."""
    path = str(tmp_path / name)
    while len(path) < length - 210:
        path += "/" + "d" * 200
    return path + "/" + "f" * (length - len(path) - 1)


# --- schemas/config.json: every bound and pattern ---------------------------------------------------------------

BAD = [
    ("cniVersion", "9.9.9", 1, "incompatible"),
    ("name", "", 7, "name"), ("name", "-net", 7, "name"), ("name", "a b", 7, "name"), ("name", "net\n", 7, "name"),
    ("name", "n" * 201, 7, "name"), ("name", 5, 7, "name"),
    ("type", "", 7, "type"), ("type", 1, 7, "type"),
    ("master", "", 7, "master"), ("master", "a" * 16, 7, "master"), ("master", ".", 7, "master"),
    ("master", "..", 7, "master"), ("master", "eth0;reboot", 7, "master"), ("master", "eth0\n", 7, "master"),
    ("bridge", "b" * 16, 7, "bridge"), ("bridge", "a/b", 7, "bridge"), ("bridge", "..", 7, "bridge"),
    ("stateDir", "relative", 7, "stateDir"), ("stateDir", "/a\nb", 7, "stateDir"), ("stateDir", "/a\0b", 7, "stateDir"),
    ("stateDir", "/" + "s" * 1024, 7, "stateDir"),
    ("logFile", "log", 7, "logFile"), ("logFile", "/a\n", 7, "logFile"), ("logFile", "/" + "l" * 1024, 7, "logFile"),
    ("logMaxBytes", 4095, 7, "logMaxBytes"), ("logMaxBytes", -1, 7, "logMaxBytes"),
    ("logMaxBytes", 4096.5, 7, "logMaxBytes"), ("logMaxBytes", "4096", 7, "logMaxBytes"),
    ("logMaxBytes", True, 7, "logMaxBytes"),
    ("dryRun", "yes", 7, "dryRun"), ("dryRun", 1, 7, "dryRun"),
    ("ipTimeoutSeconds", 0, 7, "ipTimeoutSeconds"), ("ipTimeoutSeconds", -1, 7, "ipTimeoutSeconds"),
    ("ipTimeoutSeconds", 300.001, 7, "ipTimeoutSeconds"), ("ipTimeoutSeconds", "10", 7, "ipTimeoutSeconds"),
    ("routeViaHost", "10.96.0.0/12", 7, "routeViaHost"), ("routeViaHost", ["10.96.0.0"], 7, "routeViaHost"),
    ("routeViaHost", ["10.96.0.0/12\n"], 7, "routeViaHost"), ("routeViaHost", ["x/8"], 7, "routeViaHost"),
    ("routeViaHost", ["10.96.0.1/12"], 7, "routeViaHost"), ("routeViaHost", ["10.0.0.0/33"], 7, "routeViaHost"),
]


@pytest.mark.parametrize("key, value, code, field", BAD, ids=[f"{k}={v!r:.20}" for k, v, _, _ in BAD])
def test_every_config_bound_and_pattern_is_enforced(monkeypatch, host, tmp_path, key, value, code, field):
    refused(monkeypatch, host, netconf(tmp_path, prev_result("192.168.1.2/16"), **{key: value}), code, field)


@pytest.mark.parametrize("key, value", [
    ("name", "n" * 200), ("name", "a.b-c_d"), ("master", "e" * 15), ("bridge", "b" * 15), ("bridge", "a.b"),
    ("logMaxBytes", 4096), ("logMaxBytes", 4096.0), ("ipTimeoutSeconds", 300), ("ipTimeoutSeconds", 0.5),
    ("dryRun", False), ("routeViaHost", []), ("routeViaHost", ["10.96.0.0/12", "fd00:96::/112"]),
])
def test_every_config_bound_admits_its_edge(monkeypatch, host, tmp_path, key, value):
    if key == "master":
        host.add_link(value, addresses=["192.168.0.5/16"])
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    code, out, err = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16"), **{key: value}))
    assert code == 0, out


@pytest.mark.parametrize("key", ["stateDir", "logFile"])
def test_paths_of_1024_characters_are_admitted_and_1025_refused(monkeypatch, host, tmp_path, key):
    conf = netconf(tmp_path, prev_result("192.168.1.2/16"))
    conf[key] = long_path(tmp_path, key, 1024)
    code, out, err = call(monkeypatch, host, "ADD", conf)
    assert code == 0 and "cannot write log" not in err, out
    conf[key] = long_path(tmp_path, key + "2", 1025)
    host.calls.clear()
    refused(monkeypatch, host, conf, 7, key)


@pytest.mark.parametrize("attachment, field", [
    ({"ifname": "eth0"}, "valid-attachments[0]"), ({"containerID": "c1"}, "valid-attachments[0]"),
    ({"containerID": "a b", "ifname": "eth0"}, "containerID"), ({"containerID": "c1", "ifname": ".."}, "ifname"),
])
def test_gc_valid_attachments_are_checked(monkeypatch, host, tmp_path, attachment, field):
    conf = netconf(tmp_path, version="1.1.0", **{"cni.dev/valid-attachments": [attachment]})
    refused(monkeypatch, host, conf, 7, field, command="GC", CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_what_python_json_takes_but_json_has_not_is_code_6(monkeypatch, host, tmp_path, constant):
    text = json.dumps(netconf(tmp_path, prev_result("192.168.1.2/16"))).replace('"eno1"', '"eno1", "x": ' + constant)
    refused(monkeypatch, host, text.encode(), 6, "failed to decode config")


# --- prevResult bounds ---------------------------------------------------------------------------------------------

def test_more_pod_ips_than_the_limit_are_refused_and_the_limit_admitted(monkeypatch, host, tmp_path):
    from cniroute.result import MAX_POD_IPS

    addresses = [f"192.168.{10 + i // 250}.{1 + i % 250}/16" for i in range(MAX_POD_IPS + 1)]
    refused(monkeypatch, host, netconf(tmp_path, prev_result(*addresses)), 7, "prevResult")
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result(*addresses[:-1])))[0] == 0
    assert len(host.routes_on("eno1.host")) == MAX_POD_IPS


@pytest.mark.parametrize("address", ["255.255.255.255/32", "192.168.255.255/16", "239.1.1.1/8", "127.0.0.1/8",
                                     "0.0.0.0/0", "0.1.2.3/8", "169.254.9.9/16", "fe80::1/64", "ff05::2/16", "::1/128",
                                     "::/0", "::ffff:192.168.1.2/128"])
def test_an_address_no_pod_owns_is_refused(monkeypatch, host, tmp_path, address):
    out = refused(monkeypatch, host, netconf(tmp_path, prev_result("192.168.1.2/16", address)), 7, "prevResult.ips[1]")
    assert "not a pod's unicast address" in out["details"]


@pytest.mark.parametrize("address", ["192.168.1.255/16", "192.168.0.0/16", "10.0.0.1/31", "10.0.0.0/31",
                                     "192.168.1.2/32", "fd00::1:2/64"])
def test_unicast_addresses_at_subnet_edges_are_routed(monkeypatch, host, tmp_path, address):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result(address)))[0] == 0


# --- route replay: the shapes the plugin never logs ----------------------------------------------------------------

NEVER_LOGGED = [
    # nft: anything beyond the exact words, nft's own separators, other tables, files
    "nft add table inet cni_route ';' delete table ip victim",
    "nft add table inet cni_route \\; flush ruleset",
    "nft 'add table inet cni_route; flush ruleset'",
    "nft add table inet cni_route extra",
    "nft add table ip cni_route",
    "nft delete table ip nat",
    "nft flush ruleset",
    "nft -f /tmp/x",
    "nft add chain inet cni_route postrouting '{ type filter hook input priority 0 ; policy drop ; }'",
    'nft add rule inet cni_route postrouting iifname \'"a;b"\' ct status dnat masquerade comment \'"a"\'',
    'nft add rule inet cni_route postrouting iifname \'"x"\' accept comment \'"x"\'',
    "nft delete rule inet cni_route postrouting handle 1x",
    "nft delete rule inet filter input handle 5",
    # ip: options, other objects, extra or missing words, values of the wrong kind
    "ip -batch /tmp/x",
    "ip -n other link set dev eth0 up",
    "ip netns exec x sh",
    "ip link del eno1",
    "ip link set dev eno1 down",
    "ip link set dev eno1 xdp obj /tmp/prog.o",
    "ip link set dev eno1 netns 1",
    "ip link set dev eno1 mtu 1500 up",
    "ip link set dev eno1 mtu -1",
    "ip link add x type veth peer name y",
    "ip link add eno1.host link eno1 type macvlan mode private",
    "ip route flush table main",
    "ip route replace default dev eno1.host scope link proto 201 table 5",
    "ip route replace 192.168.1.2/32 dev eno1.host scope link proto 201 metric 1",
    "ip route replace 192.168.1.2/32 via 10.0.0.1 dev eno1.host proto 201",
    "ip route replace x/32 dev e scope link proto 201",
    "ip route del 192.168.1.2/32 dev eno1.host proto 201 table all",
    "ip addr add 192.168.0.5 dev eno1.host noprefixroute",
    "ip addr flush dev eno1",
    "ip rule add from all lookup 5",
    "ip route replace 10.96.0.0/12 via 192.168.0.5 dev eth0 proto 201",
    # nsenter: only the pod routes, only --net with an absolute path
    "nsenter --net=/x ip link set dev eth0 down",
    "nsenter --net=x ip route del 10.0.0.0/8 via 1.2.3.4 dev eth0 proto 201",
    "nsenter --mount=/x ip route del 10.0.0.0/8 via 1.2.3.4 dev eth0 proto 201",
    "nsenter --net=/x sh -c id",
    "nsenter --net=/x -- ip route del 10.0.0.0/8 via 1.2.3.4 dev eth0 proto 201",
    "nsenter '--net=/x\0y' ip route del 10.0.0.0/8 via 1.2.3.4 dev eth0 proto 201",
    "nsenter",
    # sysctl: only the shim's own keys, with the plugin's values
    "sysctl -w net/ipv4/conf/default/arp_filter=1",
    "sysctl -w net/ipv4/conf/all/arp_filter=1",
    "sysctl -w net/ipv4/conf/eno1/rp_filter=0",
    "sysctl -w net/ipv4/conf/eno1/arp_filter=0",
    "sysctl -w net/ipv6/conf/eno1/disable_ipv6=2",
    "sysctl -w net/ipv4/ip_forward=1",
    "sysctl -w kernel/core_pattern=x",
    "sysctl -w net/ipv4/conf/eno1/arp_filter=1 net/ipv4/ip_forward=1",
    "sysctl -p",
    "sysctl -w net.ipv4.conf.eno1.arp_filter=1",
    # anything else
    "rm -rf /tmp/x",
    "sh -c id",
    "",
    "ip route replace 'unterminated",
    "IP link set dev eno1 up",]


@pytest.mark.parametrize("line", NEVER_LOGGED)
def test_replay_refuses_every_shape_the_plugin_never_logs(line):
    assert replay.replayable(line) is None


def test_replay_runs_nothing_of_a_refused_line(tmp_path, host):
    out = io.StringIO()
    blocks = parse_log("# == route 0.1.0 | 2026-01-01T00:00:00.000Z | ADD | pid 1\n" + "\n".join(NEVER_LOGGED) + "\n")
    replay.replay(blocks, out, keep_going=True, host=host)
    assert host.calls == [] and out.getvalue().count("refused") == len([x for x in NEVER_LOGGED if x.strip()])


# --- the journal: one definition of a line break -------------------------------------------------------------------

@pytest.mark.parametrize("brk", list(journal.LINE_BREAKS), ids=[f"U+{ord(c):04X}" for c in journal.LINE_BREAKS])
def test_every_line_break_in_a_header_value_is_escaped(brk):
    j = Journal()
    j.header.update(command="DEL", container=f"c{brk}ip link del eno1", netns=f"/x{brk}ip link del eno1")
    text = j.text()
    assert all(line.startswith("#") for line in text.splitlines()), text
    assert len(text.splitlines()) == len(text.split("\n")) - 1 == 3
    block = parse_log(text)[0]
    assert block.lines == [] and block.fields["netns"] == "/x" + repr(brk)[1:-1] + "ip link del eno1"


def test_the_splitlines_breaks_are_exactly_the_ones_escaped():
    breaks = {chr(i) for i in range(0x110000) if len(f"a{chr(i)}b".splitlines()) == 2}
    assert breaks == set(journal.LINE_BREAKS) - {"\r\n"}


@pytest.mark.parametrize("brk", sorted(set(journal.LINE_BREAKS) - {"\n"}))
def test_the_reader_splits_lines_at_newline_only(brk):
    block = parse_log(f"# == route 0.1.0 | 2026-01-01T00:00:00.000Z | DEL | pid 1\n# x{brk}ip link del eno1\n")[0]
    assert block.lines == []


@pytest.mark.parametrize("brk", list(journal.LINE_BREAKS))
def test_a_command_with_any_line_break_is_never_logged(brk):
    with pytest.raises(ValueError):
        Journal().command(["ip", "route", "replace", f"x{brk}ip link del eno1"])


# --- the log file ----------------------------------------------------------------------------------------------------

def test_a_log_with_another_hard_link_is_not_written(monkeypatch, host, tmp_path):
    other = tmp_path / "other"
    other.write_text("precious\n")
    os.link(other, tmp_path / "route.log")
    code, out, err = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16"),
                                                             logFile=str(tmp_path / "route.log")))
    assert code == 0 and "hard links" in err and "ip route replace" in err
    assert other.read_text() == "precious\n"


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir], ids=["fifo", "directory"])
def test_a_log_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, make):
    make(tmp_path / "route.log")
    with pytest.raises(OSError, match="not a regular file"):
        append_block(str(tmp_path / "route.log"), "# == route 0 | T | ADD | pid 1\n", 4096)


# --- faults only the e2e races used to catch --------------------------------------------------------------------------

def test_a_timed_out_ip_is_code_101(monkeypatch, host, tmp_path):
    def hang(argv, stdin, timeout, **options):
        raise CommandTimeout(f"{' '.join(argv)} timed out after {timeout} s")

    monkeypatch.setattr(host, "execute", hang)
    code, out, _ = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert (code, out["code"]) == (1, 101) and "timed out" in out["msg"]


def test_the_shim_lock_is_exclusive(tmp_path):
    path = str(tmp_path / "lock")
    with lock.held(path, 1.0), pytest.raises(TryAgainLater), lock.held(path, 0.05):
        pass
    with lock.held(path, 0.05):  # and released after
        pass


def test_a_waiter_gets_the_lock_when_it_is_released_from_any_thread(tmp_path):
    path, order = str(tmp_path / "lock"), []

    def second():
        with lock.held(path, 30.0):
            order.append("second")

    with lock.held(path, 1.0):
        waiter = threading.Thread(target=second)  # not the main thread: no signals involved
        waiter.start()
        waiter.join(0.2)
        order.append("first")
    waiter.join(30.0)
    assert order == ["first", "second"]


def test_a_waiter_that_gave_up_leaves_the_lock_free(tmp_path):
    """Its wait goes on in the kernel after the timeout; when that ends, the lock it got is dropped at once."""
    path = str(tmp_path / "lock")
    before = sorted(os.listdir("/proc/self/fd"))
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another holder
    with pytest.raises(TryAgainLater), lock.held(path, 0.05):
        pass
    os.close(fd)  # the abandoned wait ends now
    with lock.held(path, 5.0):
        pass
    for _ in range(500):  # and its thread closes its descriptor
        if sorted(os.listdir("/proc/self/fd")) == before:
            break
        time.sleep(0.01)
    assert sorted(os.listdir("/proc/self/fd")) == before


# --- state ------------------------------------------------------------------------------------------------------------

def test_gc_goes_on_past_any_failure_of_one_attachment(monkeypatch, host, tmp_path):
    for cid, ip in (("a", "192.168.1.2/16"), ("b", "192.168.1.3/16"), ("c", "192.168.1.4/16")):
        assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result(ip)), CNI_CONTAINERID=cid)[0] == 0
    detach = plugin._detach

    def flaky(runner, store, attachment, netns):
        if attachment.container_id == "b":
            raise TypeError("a bug")
        detach(runner, store, attachment, netns)

    monkeypatch.setattr(plugin, "_detach", flaky)
    gc = netconf(tmp_path, version="1.1.0", **{"cni.dev/valid-attachments": []})
    code, out, _ = call(monkeypatch, host, "GC", gc, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert (code, out["code"]) == (1, 999) and "a bug" in out["details"]
    assert host.routes_on("eno1.host") == ["192.168.1.3/32"]


def test_a_long_container_id_gets_a_bounded_file_name_and_keeps_its_record(monkeypatch, host, tmp_path):
    cid = "x" * 5000
    conf = netconf(tmp_path, prev_result("192.168.1.2/16"))
    assert call(monkeypatch, host, "ADD", conf, CNI_CONTAINERID=cid)[0] == 0
    [name] = os.listdir(tmp_path / "networks" / "default" / "attachments")
    assert len(name) <= MAX_STEM + len(".json") and "~" in name
    assert Store(str(tmp_path)).attachment("default", f"{cid}@eth0").container_id == cid
    assert call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID=cid)[0] == 0
    assert host.routes_on("eno1.host") == [] and os.listdir(tmp_path / "networks" / "default" / "attachments") == []


def test_a_record_under_another_attachments_name_is_not_used(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")), CNI_CONTAINERID="a")[0] == 0
    records = tmp_path / "networks" / "default" / "attachments"
    os.rename(records / "a@eth0.json", records / "b@eth0.json")
    assert call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="b")[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]  # b's DEL does not act on a's record


def test_a_record_under_another_networks_directory_is_not_used(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    moved = tmp_path / "networks" / "other" / "attachments"
    moved.mkdir(parents=True)
    os.rename(tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json", moved / "c1@eth0.json")
    assert call(monkeypatch, host, "DEL", netconf(tmp_path, name="other"))[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]  # other's DEL does not act on default's record


def test_claims_of_an_older_version_are_adopted_newest_first(tmp_path):
    # (the newest is neither the first network nor the greatest name: only its time decides)
    for network, owner, mtime in (("a", "new@eth0", 2000), ("b", "old@eth0", 1000), ("c", "mid@eth0", 1500)):
        path = tmp_path / "networks" / network / "ips" / "192.168.1.9"
        path.parent.mkdir(parents=True)
        path.write_text(owner)
        os.utime(path, (mtime, mtime))
        (path.parent / "192.168.1.10").write_text("x@eth0")
    (tmp_path / "networks" / "b" / "ips" / "192.168.1.9.77.tmp").write_text("")
    (tmp_path / "networks" / "b" / "ips" / "192.168.1.11").write_text("y@eth0")
    store = Store(str(tmp_path), adopts_older_claims=True)
    with store.shim_lock("eno1.host"):  # only a locked call moves them
        assert store.owner_of("192.168.1.9/32") == "a/new@eth0"
        assert store.owner_of("192.168.1.11/32") == "b/y@eth0"  # past the temporary file, whatever the order
    assert not [p for p in tmp_path.glob("networks/*/ips/*") if not p.name.endswith(".tmp")]


def test_a_current_claim_wins_over_an_older_versions(tmp_path):
    store = Store(str(tmp_path), adopts_older_claims=True)
    legacy = tmp_path / "networks" / "a" / "ips" / "192.168.1.9"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("old@eth0")
    (tmp_path / "ips").mkdir()
    (tmp_path / "ips" / "192.168.1.9").write_text("b/new@eth0")
    with store.shim_lock("eno1.host"):
        assert store.owner_of("192.168.1.9/32") == "b/new@eth0" and not legacy.exists()


# --- the node ----------------------------------------------------------------------------------------------------

def test_the_shim_takes_the_masters_disable_ipv6_before_its_addresses(monkeypatch, host, tmp_path):
    host.sysctls["net/ipv6/conf/default/disable_ipv6"] = "1"  # new links start with IPv6 off
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    changes = [" ".join(argv) for argv in host.changes()]
    assert changes.index("sysctl -w net/ipv6/conf/eno1.host/disable_ipv6=0") < changes.index(
        "ip addr add fd00::5/64 dev eno1.host noprefixroute nodad")
    assert call(monkeypatch, host, "CHECK", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    host.sysctls["net/ipv6/conf/eno1.host/disable_ipv6"] = "1"
    code, out, _ = call(monkeypatch, host, "CHECK", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert out["code"] == 103 and "disable_ipv6 is 1, not 0" in out["msg"]


@pytest.mark.parametrize("program", ["nft", "nsenter"])
def test_route_via_host_without_its_programs_changes_nothing(monkeypatch, host, tmp_path, program):
    host.on_path.discard(program)
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    conf = netconf(tmp_path, prev_result("192.168.1.2/16"), routeViaHost=["10.96.0.0/12"])
    out = refused(monkeypatch, host, conf, 105, program)
    assert "not on PATH" in out["msg"]
    status = netconf(tmp_path, version="1.1.0", routeViaHost=["10.96.0.0/12"])
    code, out, _ = call(monkeypatch, host, "STATUS", status, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert out["code"] == 50 and program in out["msg"]


def test_a_file_stem_is_the_owner_up_to_its_bound(tmp_path):
    at_bound, past = "c" * (MAX_STEM - 5) + "@eth0", "c" * (MAX_STEM - 4) + "@eth0"
    assert file_stem(at_bound) == at_bound
    assert len(file_stem(past)) <= MAX_STEM and file_stem(past) != file_stem(past + "x")


def test_state_files_are_private_and_records_round_trip(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16", "fd00::1:2/64")))[0] == 0
    record = tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json"
    assert os.stat(record).st_mode & 0o777 == 0o600 and os.stat(record.parent).st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "ips" / "192.168.1.2").st_mode & 0o777 == 0o600
    assert Store(str(tmp_path)).attachment("default", "c1@eth0") == Attachment(
        "c1", "eth0", "default", "eno1", "eno1.host", ["192.168.1.2/32", "fd00::1:2/128"], [],
        netns=POD_NETNS, netns_id=host.namespace_id(POD_NETNS),
        node_view=["carried 192.168.0.5/16", "carried fd00::5/64", "master 192.168.0.5/16", "master fd00::5/64"])
    assert call(monkeypatch, host, "DEL", netconf(tmp_path))[0] == 0
    assert os.listdir(tmp_path / "ips") == []  # the claim went with the route


def test_del_with_an_unreadable_record_removes_what_prev_result_names_and_it_still_owns(monkeypatch, host, tmp_path):
    conf = netconf(tmp_path, prev_result("192.168.1.2/16"))
    assert call(monkeypatch, host, "ADD", conf)[0] == 0
    (tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json").write_text('{"torn')
    assert call(monkeypatch, host, "DEL", conf)[0] == 0
    assert host.routes_on("eno1.host") == [] and os.listdir(tmp_path / "ips") == []


def test_gc_releases_only_its_own_networks_stale_claims(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")), CNI_CONTAINERID="a")[0] == 0
    assert call(monkeypatch, host, "ADD", {**netconf(tmp_path, prev_result("192.168.1.3/16")), "name": "other"},
                CNI_CONTAINERID="b")[0] == 0
    claims = tmp_path / "ips"
    (claims / "192.168.1.7").write_text("default/zombie@eth0")  # its attachment is gone
    (claims / "192.168.1.8").write_text("other/zombie@eth0")  # another network's: its GC decides
    (claims / "192.168.1.9").write_text("default/late@eth0")  # valid, its record not written yet
    (claims / "192.168.1.9.123.tmp").write_text("")
    gc = netconf(tmp_path, version="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}, {"containerID": "late", "ifname": "eth0"}]})
    assert call(monkeypatch, host, "GC", gc, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)[0] == 0
    assert sorted(os.listdir(claims)) == ["192.168.1.2", "192.168.1.3", "192.168.1.8", "192.168.1.9"]
    assert host.routes_on("eno1.host") == ["192.168.1.2/32", "192.168.1.3/32"]


def test_add_that_finds_the_shim_down_puts_back_the_routes_of_the_pods_on_it(monkeypatch, host, tmp_path):
    host.add_link("eno2", addresses=["10.0.0.5/8"])
    for cid, ip, keys in (("a", "192.168.1.2/16", {}), ("b", "192.168.1.3/16", {}),
                          ("x", "10.1.0.2/8", {"master": "eno2"})):
        assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result(ip), **keys), CNI_CONTAINERID=cid)[0] == 0
    (tmp_path / "ips" / "192.168.1.3").write_text("other/taken@eth0")  # b's address belongs to another pod now
    host.links["eno1.host"]["up"] = False
    host.routes = [r for r in host.routes if r["dev"] not in ("eno1.host", "eno2.host")]  # as the kernel does
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.4/16")), CNI_CONTAINERID="c")[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32", "192.168.1.4/32"]
    assert host.routes_on("eno2.host") == []  # another shim's pods are that shim's business


@pytest.mark.parametrize("address", ["224.0.0.5/4", "192.168.255.255/16"])
def test_check_refuses_what_add_refuses(monkeypatch, host, tmp_path, address):
    refused(monkeypatch, host, netconf(tmp_path, prev_result("192.168.1.2/16", address)), 7, "prevResult.ips[1]",
            command="CHECK")


def test_a_log_write_cut_short_is_taken_back(monkeypatch, tmp_path):
    path = tmp_path / "route.log"
    path.write_text("# == route 0 | T | ADD | pid 1\n")
    real_write = os.write

    def half(fd, data):
        return real_write(fd, data[:len(data) // 2])

    monkeypatch.setattr(journal.os, "write", half)
    with pytest.raises(OSError, match="only"):
        append_block(str(path), "# == route 0 | T | DEL | pid 2\nip route del x\n", 1 << 20)
    assert path.read_text() == "# == route 0 | T | ADD | pid 1\n"


def test_gc_goes_on_past_an_unreadable_record(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")), CNI_CONTAINERID="z")[0] == 0
    records = tmp_path / "networks" / "default" / "attachments"
    for name in ("a@eth0.json", "b@eth0.json"):  # both sort before z
        (records / name).write_text('{"torn')
    gc = netconf(tmp_path, version="1.1.0", **{"cni.dev/valid-attachments": []})
    assert call(monkeypatch, host, "GC", gc, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)[0] == 0
    assert host.routes_on("eno1.host") == [] and os.listdir(records) == []


def test_a_header_value_that_is_not_utf8_is_still_logged(monkeypatch, host, tmp_path):
    log = tmp_path / "route.log"
    code, _, err = call(monkeypatch, host, "DEL", netconf(tmp_path, logFile=str(log)), CNI_NETNS="/x\udcff")
    assert code == 0 and err == "" and parse_log(log.read_text())[0].fields["netns"] == "/x?"


def test_a_log_write_that_fails_halfway_is_taken_back(monkeypatch, tmp_path):
    path = tmp_path / "route.log"
    path.write_text("# == route 0 | T | ADD | pid 1\n")
    real_write = os.write

    def full(fd, data):
        real_write(fd, data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        append_block(str(path), "# == route 0 | T | DEL | pid 2\nip route del x\n", 1 << 20)
    assert path.read_text() == "# == route 0 | T | ADD | pid 1\n"


@pytest.mark.parametrize("line", [
    "ip link add name eno1.host link eno1 type macvlan mode bridge",
    "ip link add eno1.host link eno1 type macvlan mode bridge",  # as versions before 'name' logged it
    "ip link set dev eno1.host mtu 1400", "ip link set dev eno1.host up",
    "ip addr add 192.168.0.5/16 dev eno1.host noprefixroute",
    "ip addr add fd00::5/64 dev eno1.host noprefixroute nodad",
    "ip addr del 192.168.0.5/16 dev eno1.host",
    "ip route replace 192.168.1.2/32 dev eno1.host scope link proto 201",
    "ip route del fd00::2/128 dev eno1.host proto 201",
    "nsenter --net=/proc/42/ns/net ip route replace 10.96.0.0/12 via 192.168.0.5 dev eth0 proto 201",
    "nsenter --net=/var/run/netns/p ip route del 10.96.0.0/12 via 192.168.0.5 dev eth0 proto 201",
    "nft add table inet cni_route",
    "nft delete table inet cni_route", "nft delete rule inet cni_route postrouting handle 7",
    "nft add chain inet cni_route postrouting '{ type nat hook postrouting priority srcnat ; policy accept ; }'",
    "nft add rule inet cni_route postrouting iifname '\"eno1.host\"' ct status dnat masquerade comment '\"eno1.host\"'",
    "sysctl -w net/ipv4/conf/eno1.host/arp_filter=1", "sysctl -w net/ipv6/conf/eno1.host/accept_ra=0",
    "sysctl -w net/ipv4/conf/eno1.host/promote_secondaries=1", "sysctl -w net/ipv6/conf/eno1.host/disable_ipv6=0",
    "sysctl -w net/ipv6/conf/eno1.host/disable_ipv6=1",
])
def test_replay_accepts_every_shape_the_plugin_logs_word_for_word(line):
    assert replay.replayable(line) is not None
