"""Every file doctor, reconcile, replay and install read from a conf dir, a state dir or a log is read as the
plugin reads its own: never waited for, a regular file only, bounded in size, with one line saying what was
skipped and why. Each kind of file that is not what it should be, in each place."""
import os
import signal
import socket
import stat

import pytest
from helpers import call, netconf, prev_result, run_person
from test_doctor_checks import node_programs

from cniroute import files
from cniroute.store import Store

ROUTE = '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "macvlan"}, {"type": "route", "master": "eno1"}]}'


@pytest.fixture(autouse=True)
def deadline():
    """A read that blocks (a FIFO) fails the test instead of hanging it."""
    def expired(signum, frame):
        raise TimeoutError("a read blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def plant(path, kind):
    """Put a `kind` of thing at `path`; the reason the readers must give for skipping it."""
    if kind == "fifo":
        os.mkfifo(path)
        return "not a regular file"
    if kind == "device":  # a conflist linked to /dev/zero made doctor read until MemoryError
        os.symlink("/dev/zero", path)
        return "not a regular file"
    if kind == "device node":  # /dev/zero's own numbers
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
        return "not a regular file"
    if kind == "directory":
        os.mkdir(path)
        return "not a regular file"
    if kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
        return "not a regular file"
    if kind == "huge":
        with open(path, "wb") as f:
            f.truncate(files.MAX_BYTES + 1)  # sparse: a file larger than any config or record
        return f"larger than {files.MAX_BYTES} bytes"
    if kind == "not UTF-8":
        path.write_bytes(b'{"name": "\xff"}')
        return "codec can't decode"
    raise AssertionError(kind)


KINDS = ["fifo", "device", "device node", "directory", "socket", "huge", "not UTF-8"]


@pytest.mark.parametrize("kind", KINDS)
def test_doctor_skips_a_config_that_is_not_a_readable_file_and_says_why(host, tmp_path, kind):
    node_programs(host)
    host.in_node_namespace = False
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "20-good.conflist").write_text(ROUTE)
    why = plant(conf / "10-bad.conflist", kind)
    code, out, err = run_person(host, "doctor", "--conf-dir", conf, "--state-dir", tmp_path / "state")
    line = next(line for line in out.splitlines() if "10-bad.conflist" in line)
    assert "WARN" in line and "skipped" in line and why in line, out
    assert "network n: " in out  # the good one is read all the same


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_that_is_not_a_readable_file_is_skipped_with_a_line_by_reconcile_and_doctor(monkeypatch, host,
                                                                                             tmp_path, kind):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    why = plant(tmp_path / "networks" / "default" / "attachments" / "bad@eth0.json", kind)
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path)
    assert code == 0, err
    line = next(line for line in err.splitlines() if "bad@eth0.json" in line)
    assert line.startswith("route reconcile: skipped ") and why in line, err
    node_programs(host)
    host.in_node_namespace = False
    code, out, err = run_person(host, "doctor", "--conf-dir", tmp_path / "none", "--state-dir", tmp_path)
    line = next(line for line in out.splitlines() if "bad@eth0.json" in line)
    assert "WARN" in line and why in line, out


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_network_dir_that_is_a_symlink_or_a_file_is_skipped_and_the_others_are_repaired(monkeypatch, host,
                                                                                          tmp_path, kind):
    """A networks/NET linked out of the state dir is never read (nor would GC remove files through it)."""
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    elsewhere = tmp_path / "elsewhere" / "attachments"
    elsewhere.mkdir(parents=True)
    os.link(tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json", elsewhere / "c1@eth0.json")
    planted = tmp_path / "networks" / "planted"
    if kind == "symlink":
        planted.symlink_to(elsewhere.parent)
    else:
        planted.write_text("")
    host.delete_link("eno1.host")
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path)
    assert code == 0, err
    assert f"route reconcile: skipped network planted: {planted}: " \
           f"{'a symlink' if kind == 'symlink' else 'not a directory'}" in err, err
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
    node_programs(host)
    host.in_node_namespace = False
    code, out, err = run_person(host, "doctor", "--conf-dir", tmp_path / "none", "--state-dir", tmp_path)
    assert err == "" and "WARN  state of network planted" in out, (out, err)
    assert "network planted" not in out.replace("state of network planted", "")


def test_a_state_dir_whose_networks_is_not_a_directory_is_said_not_a_traceback(host, tmp_path):
    (tmp_path / "networks").write_text("")
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path)
    assert f"route reconcile: skipped {tmp_path}/networks: not a directory" in err, err


def test_a_huge_state_directory_is_refused_not_read_whole(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    monkeypatch.setattr(files, "MAX_ENTRIES", 3)
    for n in range(3):
        (tmp_path / "networks" / "default" / "attachments" / f"x{n}").write_text("")
    skipped = []
    assert Store(str(tmp_path)).every_attachment(skipped) == []
    assert skipped == [f"skipped network default: {tmp_path}/networks/default/attachments: more than 3 entries"]


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "socket"])
def test_replay_refuses_a_log_that_is_not_a_regular_file(host, tmp_path, kind):
    why = plant(tmp_path / "log", kind)
    code, out, err = run_person(host, "replay", "--dry-run", tmp_path / "log")
    assert code == 2 and err.startswith(f"route replay: refusing {tmp_path}/log: ") and why in err, err


def test_replay_refuses_a_log_larger_than_its_bound(monkeypatch, host, tmp_path):
    from cniroute import replay

    monkeypatch.setattr(replay, "MAX_LOG", 1000)
    (tmp_path / "log").write_text("# == route 1 | 2026-01-01T00:00:00.000Z | ADD | pid 1\n" * 100)
    code, _, err = run_person(host, "replay", "--dry-run", tmp_path / "log")
    assert code == 2 and "larger than 1000 bytes" in err, err


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "socket", "huge"])
def test_install_refuses_a_conflist_that_is_not_a_readable_file(tmp_path, kind):
    from cniroute import install

    why = plant(tmp_path / "10-route.conflist", kind)
    with pytest.raises(install.Refused, match=f"cannot read --conflist: .*{why}"):
        install._read_conflist(argparse_namespace(conflist=str(tmp_path / "10-route.conflist"),
                                                  conf_dir=str(tmp_path / "net.d"), name="route"), check=True)


def argparse_namespace(**values):
    import argparse

    return argparse.Namespace(**values)


def test_a_file_of_exactly_the_bound_is_read_and_one_byte_more_is_not(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert files.read_bytes(str(path), 1000) == b"x" * 1000
    with pytest.raises(OSError, match="larger than 999 bytes"):
        files.read_bytes(str(path), 999)


def test_a_record_that_is_a_symlink_is_not_followed(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    records = tmp_path / "networks" / "default" / "attachments"
    os.rename(records / "c1@eth0.json", tmp_path / "elsewhere.json")
    (records / "c1@eth0.json").symlink_to(tmp_path / "elsewhere.json")
    skipped = []
    assert Store(str(tmp_path)).every_attachment(skipped) == []
    assert skipped and "c1@eth0.json" in skipped[0], skipped
