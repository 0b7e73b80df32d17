"""The replayable log: where it goes, how it is written, and `route replay` over it."""
import io
import os
import stat
from pathlib import Path

import pytest
from helpers import call, netconf, prev_result

from cniroute import person, replay, shim
from cniroute.journal import Journal, append_block, parse_log


@pytest.fixture
def logged(tmp_path):
    log = tmp_path / "logs" / "route.log"

    def make(*addresses, **keys):
        return netconf(tmp_path, prev_result(*addresses) if addresses else None, logFile=str(log), **keys)
    make.path = log
    return make


def test_log_file_gets_one_block_per_call_created_0600(monkeypatch, host, logged):
    c = logged("192.168.1.2/16")
    for verb in ("ADD", "CHECK", "DEL"):
        code, _, err = call(monkeypatch, host, verb, c)
        assert code == 0 and err == ""
    text = logged.path.read_text()
    assert stat.S_IMODE(os.stat(logged.path).st_mode) == 0o600
    blocks = parse_log(text)
    assert [b.command for b in blocks] == ["ADD", "CHECK", "DEL"]
    assert blocks[0].fields == {"container": "c1", "ifname": "eth0", "netns": "/var/run/netns/pod1",
                                "network": "default", "cniVersion": "1.0.0"}
    mac = shim.stable_mac(host.links["eno1"]["mac"], "eno1.host")
    assert blocks[0].lines == [f"ip link add name eno1.host link eno1 address {mac} type macvlan mode bridge",
                               "sysctl -w net/ipv4/conf/eno1.host/arp_filter=1",
                               "sysctl -w net/ipv6/conf/eno1.host/accept_ra=0",
                               "sysctl -w net/ipv4/conf/eno1.host/promote_secondaries=1",
                               "ip addr add 192.168.0.5/16 dev eno1.host noprefixroute",
                               "ip addr add fd00::5/64 dev eno1.host noprefixroute nodad",
                               "ip link set dev eno1.host up",
                               "ip route replace 192.168.1.2/32 dev eno1.host scope link proto 201"]
    assert blocks[1].lines == []  # CHECK only reads
    assert blocks[2].lines == ["ip route del 192.168.1.2/32 dev eno1.host proto 201"]


def test_without_log_file_the_block_goes_to_stderr(monkeypatch, host, tmp_path):
    _, _, err = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert parse_log(err)[0].lines[-1].startswith("ip route replace 192.168.1.2/32")


def test_failed_call_logs_the_cni_error(monkeypatch, host, logged):
    call(monkeypatch, host, "ADD", logged())
    assert "# error code 7: must be called as a chained plugin" in logged.path.read_text()


def test_symlink_in_place_of_the_log_is_refused_and_the_call_still_succeeds(monkeypatch, host, logged, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    logged.path.parent.mkdir()
    os.symlink(target, logged.path)
    code, out, err = call(monkeypatch, host, "ADD", logged("192.168.1.2/16"))
    assert code == 0 and out["ips"]
    assert "cannot write log" in err and "ip route replace" in err  # the block is not lost
    assert target.read_text() == "precious\n"


def test_unwritable_log_never_fails_the_call(monkeypatch, host, tmp_path):
    (tmp_path / "file").write_text("")
    c = netconf(tmp_path, prev_result("192.168.1.2/16"), logFile=str(tmp_path / "file" / "route.log"))
    code, _, err = call(monkeypatch, host, "ADD", c)
    assert code == 0 and "cannot write log" in err


def test_rotation_keeps_one_previous_file(tmp_path):
    path = str(tmp_path / "route.log")
    block = "# == route 0 | 2026-01-01T00:00:00.000Z | ADD | pid 1\n" + "#" * 1000 + "\n"
    for _ in range(10):
        append_block(path, block, 4096)
    # 3 blocks fit under the cap; writes 4, 7 and 10 rotate, and only the newest .1 is kept
    assert len(parse_log(Path(path).read_text())) == 1
    assert len(parse_log(Path(path + ".1").read_text())) == 3
    assert not os.path.exists(path + ".2")


def test_dry_run_changes_nothing_logs_everything_and_prints_the_result(monkeypatch, host, logged, tmp_path):
    c = logged("192.168.1.2/16")
    monkeypatch.setenv("CNI_ROUTE_DRY_RUN", "1")
    code, out, _ = call(monkeypatch, host, "ADD", c)
    assert code == 0 and out == c["prevResult"]
    assert host.changes() == [] and "eno1.host" not in host.links
    assert "# dry-run, not run: ip route replace 192.168.1.2/32" in logged.path.read_text()
    assert not (tmp_path / "networks").exists()  # no state either


def test_dry_run_from_config(monkeypatch, host, logged):
    assert call(monkeypatch, host, "ADD", logged("192.168.1.2/16", dryRun=True))[0] == 0
    assert host.changes() == []


def two_pod_log(monkeypatch, host, logged):
    for cid, ip in (("a", "192.168.1.2/16"), ("b", "192.168.1.3/16")):
        assert call(monkeypatch, host, "ADD", logged(ip), CNI_CONTAINERID=cid)[0] == 0
    return str(logged.path)


def test_replay_dry_run_runs_nothing(monkeypatch, host, logged, capsys):
    path = two_pod_log(monkeypatch, host, logged)
    host.calls.clear()
    assert person.main(["replay", "--dry-run", path], host=host) == 0
    assert host.calls == []
    out = capsys.readouterr().out
    assert "ip route replace 192.168.1.2/32" in out and "ip route replace 192.168.1.3/32" in out


def test_replay_container_touches_only_that_container(monkeypatch, host, logged, capsys):
    path = two_pod_log(monkeypatch, host, logged)
    host.routes = [r for r in host.routes if r["dev"] != "eno1.host"]
    host.calls.clear()
    assert person.main(["replay", "--container", "b", path], host=host) == 0
    assert host.routes_on("eno1.host") == ["192.168.1.3/32"]
    assert host.calls == [["ip", "route", "replace", "192.168.1.3/32", "dev", "eno1.host", "scope", "link",
                           "proto", "201"]]


def test_replay_stops_at_the_first_failure_unless_keep_going(monkeypatch, host, logged, capsys):
    path = two_pod_log(monkeypatch, host, logged)
    host.calls.clear()  # the shim exists: replaying `ip link add` fails, and so do the `ip addr add`s
    assert person.main(["replay", path], host=host) == 1
    mac = shim.stable_mac(host.links["eno1"]["mac"], "eno1.host")
    assert host.calls == [["ip", "link", "add", "name", "eno1.host", "link", "eno1", "address", mac, "type", "macvlan",
                           "mode", "bridge"]]
    host.calls.clear()
    assert person.main(["replay", "--keep-going", path], host=host) == 1
    assert [argv[:3] for argv in host.calls] == [
        ["ip", "link", "add"], ["sysctl", "-w", "net/ipv4/conf/eno1.host/arp_filter=1"],
        ["sysctl", "-w", "net/ipv6/conf/eno1.host/accept_ra=0"],
        ["sysctl", "-w", "net/ipv4/conf/eno1.host/promote_secondaries=1"], ["ip", "addr", "add"], ["ip", "addr", "add"],
        ["ip", "link", "set"], ["ip", "route", "replace"], ["ip", "route", "replace"]]


def test_replay_filters_by_command_and_time(monkeypatch, host, logged, capsys):
    path = two_pod_log(monkeypatch, host, logged)
    blocks = parse_log(Path(path).read_text())
    assert replay.select(blocks, command="DEL") == []
    assert replay.select(blocks, since=replay._parse_time("2999-01-01T00:00")) == []
    assert len(replay.select(blocks, since=replay._parse_time(blocks[0].time))) == 2


@pytest.mark.parametrize("text", ["#!/bin/sh\nip link del eno1\n", "", "hello\n"])
def test_replay_refuses_what_is_not_a_route_log(tmp_path, host, capsys, text):
    path = tmp_path / "x.log"
    path.write_text(text)
    assert person.main(["replay", str(path)], host=host) == 2
    assert "refusing" in capsys.readouterr().err and host.calls == []


def test_replay_refuses_lines_that_are_not_ip(tmp_path, host):
    path = tmp_path / "x.log"
    path.write_text("# == route 0.1.0 | 2026-01-01T00:00:00.000Z | ADD | pid 1\nrm -rf /tmp/x\n")
    out = io.StringIO()
    assert replay.replay(parse_log(path.read_text()), out, host=host) == 1
    assert "refused" in out.getvalue() and host.calls == []


def test_header_values_cannot_inject_commands(monkeypatch, host, logged):
    call(monkeypatch, host, "DEL", logged(), CNI_NETNS="/x\nip link del eno1")
    blocks = parse_log(logged.path.read_text())
    assert blocks[0].lines == [] and blocks[0].fields["netns"] == "/x\\nip link del eno1"


@pytest.mark.parametrize("line", [
    "ip -batch /tmp/evil", "ip netns exec x sh -c id", "nsenter --net=/proc/1/ns/net sh -c id",
    "nsenter --net=/x ip link add x type veth", "nft -f /tmp/evil", "nft add table ip nat",
    "sysctl -w kernel/core_pattern=x", "sysctl -w net/ipv4/ip_forward=1", "sysctl -w net/ipv4/conf/all/rp_filter=0",
    "sysctl -p", "rm -rf /tmp/x", "ip route replace 'unterminated", "",
])
def test_replay_refuses_what_the_plugin_never_logs(line):
    assert replay.replayable(line) is None


def test_replay_accepts_every_shape_the_plugin_logs(monkeypatch, host, logged, tmp_path):
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    c = logged("192.168.1.2/16", routeViaHost=["10.96.0.0/12"])
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    host.add_neighbour("192.168.1.2", "eno1.host")
    assert call(monkeypatch, host, "DEL", c)[0] == 0
    lines = [line for block in parse_log(logged.path.read_text()) for line in block.lines]
    assert {line.split()[0] for line in lines} == {"ip", "sysctl", "nft", "nsenter"}
    assert "ip neigh del 192.168.1.2 dev eno1.host" in lines
    assert [line for line in lines if replay.replayable(line) is None] == []


def test_a_command_spanning_lines_is_never_logged():
    journal = Journal()
    with pytest.raises(ValueError):
        journal.command(["ip", "route", "replace", "x\u2028ip link del eno1"])
