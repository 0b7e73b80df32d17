"""Behaviours no test covered: found by one-line bugs that the fast suite let through."""
import json

from helpers import call, netconf, prev_result, run_person

SHIM = "eno1.host"
VIA = ["10.96.0.0/12"]


def add(monkeypatch, host, state_dir, container, address, **keys):
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result(address), **keys),
                          CNI_CONTAINERID=container)
    assert code == 0, (out, err)


def test_reconcile_puts_back_the_masquerade_rule_when_only_some_pods_of_the_shim_use_route_via_host(
        monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.3/16")  # the first record: no routeViaHost
    add(monkeypatch, host, tmp_path, "b", "192.168.1.2/16", routeViaHost=VIA)
    add(monkeypatch, host, tmp_path, "c", "192.168.1.4/16")
    host.nft = None  # `nft flush ruleset`
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path)
    assert code == 0, err
    assert sorted(host.nft["rules"].values()) == [f"{SHIM} ip", f"{SHIM} ip6"]


def test_reconcile_reports_and_leaves_alone_a_shim_whose_records_name_two_masters(monkeypatch, host, tmp_path):
    host.add_link("eno2", addresses=["10.0.0.5/8"])
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16")
    path = tmp_path / "networks" / "default" / "attachments" / "b@eth0.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "master": "eno2"}))  # a config changed between the two ADDs
    host.delete_link(SHIM)
    changes = len(host.changes())
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path)
    assert code == 1
    assert f"{SHIM}: NOT in shape after 0 changes: records name eno1 and eno2 as its master: left alone" in err, err
    assert SHIM not in host.links and host.changes()[changes:] == []


def test_del_of_a_route_via_host_pod_succeeds_after_the_nft_table_is_gone(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path, "c1", "192.168.1.2/16", routeViaHost=VIA)
    assert pod.routes != []
    host.nft = None  # a ruleset flush took the table
    code, out, err = call(monkeypatch, host, "DEL", netconf(tmp_path, routeViaHost=VIA))
    assert (code, out) == (0, None), err
    assert host.routes_on(SHIM) == [] and pod.routes == [] and host.nft is None
    assert list((tmp_path / "networks" / "default" / "attachments").iterdir()) == []


def test_del_with_prev_result_removes_the_pods_route_when_its_ownership_file_is_missing(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "c1", "192.168.1.2/16")
    (tmp_path / "ips" / "192.168.1.2").unlink()
    code, out, err = call(monkeypatch, host, "DEL", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert (code, out) == (0, None), err
    assert host.routes_on(SHIM) == []


def test_del_with_prev_result_and_neither_record_nor_ownership_file_removes_the_route(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "c1", "192.168.1.2/16")
    (tmp_path / "ips" / "192.168.1.2").unlink()
    (tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json").unlink()
    code, out, err = call(monkeypatch, host, "DEL", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert (code, out) == (0, None), err
    assert host.routes_on(SHIM) == []
