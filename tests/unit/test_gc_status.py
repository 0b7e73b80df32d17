"""CNI 1.1 GC and STATUS, and the address ownership that keeps late DELs and GC off a new pod's route."""
import os

import pytest
from helpers import call, netconf, prev_result

NO_POD_ENV = {"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None}


@pytest.fixture
def add(monkeypatch, host, tmp_path):
    def run(cid, *addresses, version="1.1.0"):
        code, out, err = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result(*addresses), version=version),
                              CNI_CONTAINERID=cid)
        assert code == 0, (out, err)
    return run


def gc(monkeypatch, host, tmp_path, *valid, **keys):
    conf = netconf(tmp_path, version="1.1.0", **keys)
    conf["cni.dev/valid-attachments"] = [{"containerID": cid, "ifname": "eth0"} for cid in valid]
    return call(monkeypatch, host, "GC", conf, **NO_POD_ENV)


def test_gc_removes_stale_attachments_and_keeps_valid_ones(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    add("b", "192.168.1.3/16", "fd00::103/64")
    add("c", "192.168.1.4/16")
    assert gc(monkeypatch, host, tmp_path, "a", "c")[:2] == (0, None)
    assert host.routes_on("eno1.host") == ["192.168.1.2/32", "192.168.1.4/32"]
    assert sorted(os.listdir(tmp_path / "networks" / "default" / "attachments")) == ["a@eth0.json", "c@eth0.json"]
    assert sorted(os.listdir(tmp_path / "ips")) == ["192.168.1.2", "192.168.1.4"]


def test_gc_with_an_empty_list_removes_every_route_but_not_the_shim(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    add("b", "192.168.1.3/16")
    assert gc(monkeypatch, host, tmp_path)[0] == 0
    assert host.routes_on("eno1.host") == [] and "eno1.host" in host.links


def test_gc_never_touches_a_foreign_route_on_the_shim(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    host.add_route("10.9.9.9/32", "eno1.host", protocol="static")
    host.add_route("10.9.9.10/32", "eno1.host", protocol="201")  # our mark, but no state of ours claims it
    assert gc(monkeypatch, host, tmp_path)[0] == 0
    assert host.routes_on("eno1.host") == ["10.9.9.10/32", "10.9.9.9/32"]


def test_gc_only_touches_its_own_network(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    assert gc(monkeypatch, host, tmp_path, name="other")[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]


def test_gc_goes_on_past_an_error_and_reports_the_first(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    add("b", "192.168.1.3/16")
    add("c", "192.168.1.4/16")
    host.failures[("route", "del", "192.168.1.3/32")] = (2, "RTNETLINK answers: Operation not permitted\n")
    code, out, _ = gc(monkeypatch, host, tmp_path)
    assert code == 1 and out["code"] == 100 and "192.168.1.3/32" in out["msg"]
    assert host.routes_on("eno1.host") == ["192.168.1.3/32"]
    assert os.listdir(tmp_path / "networks" / "default" / "attachments") == ["b@eth0.json"]  # kept, for the next GC


def test_gc_drops_unreadable_state_and_leftover_temporaries(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    attachments = tmp_path / "networks" / "default" / "attachments"
    (attachments / "x@eth0.json").write_text('{"half": ')
    (attachments / "a@eth0.json.123.tmp").write_text("{")
    assert gc(monkeypatch, host, tmp_path, "a")[0] == 0
    assert os.listdir(attachments) == ["a@eth0.json"]


def test_gc_and_status_need_cni_1_1(monkeypatch, host, tmp_path):
    for verb in ("GC", "STATUS"):
        code, out, _ = call(monkeypatch, host, verb, netconf(tmp_path, version="1.0.0"), **NO_POD_ENV)
        assert out["code"] == 1 and verb in out["msg"]


def test_gc_needs_the_valid_attachments(monkeypatch, host, tmp_path):
    code, out, _ = call(monkeypatch, host, "GC", netconf(tmp_path, version="1.1.0"), **NO_POD_ENV)
    assert out["code"] == 7 and "valid-attachments" in out["msg"]


def test_a_late_del_of_an_old_pod_keeps_the_new_owners_route(monkeypatch, host, tmp_path, add):
    add("old", "192.168.1.2/16")
    add("new", "192.168.1.2/16")  # IPAM gave the address to a new pod before the old one's DEL came
    code, _, _ = call(monkeypatch, host, "DEL", netconf(tmp_path, prev_result("192.168.1.2/16")),
                      CNI_CONTAINERID="old")
    assert code == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
    assert gc(monkeypatch, host, tmp_path, "new")[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
    assert call(monkeypatch, host, "DEL", netconf(tmp_path, prev_result("192.168.1.2/16")),
                CNI_CONTAINERID="new")[0] == 0
    assert host.routes_on("eno1.host") == []


def test_status_healthy(monkeypatch, host, tmp_path):
    assert call(monkeypatch, host, "STATUS", netconf(tmp_path, version="1.1.0"), **NO_POD_ENV)[:2] == (0, None)
    assert host.changes() == []


@pytest.mark.parametrize("damage, words", [
    (lambda h: h.links.pop("eno1"), "master eno1 does not exist"),
    (lambda h: h.links["eno1"].update(up=False), "master eno1 is down"),
    (lambda h: h.add_link("eno1.host", kind="veth", parent="x"), "eno1.host is taken"),
])
def test_status_unavailable(monkeypatch, host, tmp_path, damage, words):
    damage(host)
    code, out, _ = call(monkeypatch, host, "STATUS", netconf(tmp_path, version="1.1.0"), **NO_POD_ENV)
    assert (code, out["code"]) == (1, 50) and words in out["msg"]
    assert host.changes() == []


def test_status_without_master_or_default_route(monkeypatch, host, tmp_path):
    host.routes.clear()
    conf = netconf(tmp_path, version="1.1.0")
    del conf["master"]
    code, out, _ = call(monkeypatch, host, "STATUS", conf, **NO_POD_ENV)
    assert out["code"] == 50 and "default route" in out["msg"]


def test_check_is_refused_below_0_4_0(monkeypatch, host, tmp_path):
    conf = netconf(tmp_path, prev_result("192.168.1.2/16", version="0.3.1"), version="0.3.1")
    code, out, _ = call(monkeypatch, host, "CHECK", conf)
    assert out["code"] == 1 and "CHECK" in out["msg"]


def test_gc_survives_an_empty_claim_and_a_malformed_record(monkeypatch, host, tmp_path, add):
    add("a", "192.168.1.2/16")
    net = tmp_path / "networks" / "default"
    (tmp_path / "ips" / "192.168.9.9").write_text("")
    (net / "attachments" / "x@eth0.json").write_text(
        '{"bridge": "eno1.host", "master": "eno1", "ifname": "eth0", "prefixes": [], "viaHost": [["10.96.0.0/12"]]}')
    assert gc(monkeypatch, host, tmp_path, "a")[:2] == (0, None)
    assert os.listdir(tmp_path / "ips") == ["192.168.1.2"] and os.listdir(net / "attachments") == ["a@eth0.json"]


def test_a_lock_that_cannot_be_opened_is_an_io_failure(monkeypatch, host, tmp_path):
    (tmp_path / "locks").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "locks" / "shim.eno1.host")
    code, out, _ = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert (code, out["code"]) == (1, 5) and "lock" in out["msg"]
    assert not (tmp_path / "elsewhere").exists()
