"""What route owns in a pod, and only that, against the fake ip: the reads of a pod are of route's rules, tables
and protocol-201 routes alone, so neither the record nor the work grows with the pod's own routes; DEL removes
what is route's whatever the pod made of it, CHECK says what differs; a reconcile pass enters a pod only when
the node changed in a way that concerns it. Real namespaces: tests/e2e/test_multus_bounded.py."""
import json

import helpers
import pytest
from helpers import call, netconf, prev_result, run_person

from cniroute import pod_routes

ETH0, NET1 = 2010002, 2010003  # reply_paths.REPLY_TABLE + the fake's ifindex of eth0 (2) and net1 (3)


@pytest.fixture
def multus_pod(host):
    return helpers.multus_pod(host, ipv6=True)


def conf(tmp_path):
    return netconf(tmp_path, prev_result("192.168.1.2/16", "fd00::100/64", ifname="net1"))


def on_net1(monkeypatch, host, command, tmp_path):
    return call(monkeypatch, host, command, conf(tmp_path), CNI_IFNAME="net1")


def entered(host):
    """The ip calls made inside the pod."""
    return [argv for argv in host.calls if argv[0] == "nsenter"]


def record_text(tmp_path):
    return (tmp_path / "networks" / "default" / "attachments" / "c1@net1.json").read_text()


def ours(pod):
    return [r for r in pod.routes if r.get("table", "main") in (str(ETH0), str(NET1))] + pod.rules


def test_the_pods_own_routes_are_neither_read_nor_recorded(monkeypatch, host, multus_pod, tmp_path):
    few = tmp_path / "few"
    assert on_net1(monkeypatch, host, "ADD", few)[0] == 0
    recorded = record_text(few)
    assert on_net1(monkeypatch, host, "DEL", few)[0] == 0
    for i in range(100):  # what a routing daemon on eth0 learns, and a table of the pod's own
        multus_pod.add_route(f"10.100.{i // 256}.{i % 256}/32", "eth0", protocol="bird", scope="global",
                             gateway="10.244.0.1")
        multus_pod.add_route(f"172.16.{i // 256}.{i % 256}/32", "eth0", protocol="static", table="500")
    host.calls.clear()
    many = tmp_path / "many"
    for command in ("ADD", "CHECK", "DEL"):
        code, out, err = on_net1(monkeypatch, host, command, many)
        assert code == 0, (command, out, err)
        if command == "ADD":
            assert record_text(many) == recorded
    assert all("all" not in argv and "500" not in argv for argv in entered(host)), entered(host)
    assert ours(multus_pod) == []
    assert len(multus_pod.routes) > 200  # DEL took nothing of the pod's


def test_del_removes_what_is_routes_whatever_the_pod_made_of_it(monkeypatch, host, multus_pod, tmp_path):
    assert on_net1(monkeypatch, host, "ADD", tmp_path)[0] == 0
    table6 = next(r for r in multus_pod.routes if r.get("table") == str(ETH0) and ":" in r["dst"])
    table6["metric"] = 2048  # swapped for one of another metric
    table4 = next(r for r in multus_pod.routes if r.get("table") == str(NET1) and ":" not in r["dst"])
    multus_pod.routes.append({**table4, "metric": 9})  # duplicated with another metric
    code, out, _ = on_net1(monkeypatch, host, "CHECK", tmp_path)
    assert code == 1
    assert (f"route to {table6['dst']} dev eth0 in the pod's table {ETH0} is `{table6['dst'].split('/')[0]} via "
            f"fd44::1 dev eth0 onlink metric 2048 scope global`, not `{table6['dst']} via fd44::1 dev eth0 onlink "
            f"metric 1024 scope global`") in out["msg"], out
    assert f"the pod's table {NET1} has `{table4['dst'].split('/')[0]} via 192.168.0.5 dev net1 onlink metric 9" \
        in out["msg"], out
    code, out, err = on_net1(monkeypatch, host, "DEL", tmp_path)
    assert code == 0, (out, err)
    assert ours(multus_pod) == []


def test_del_of_an_older_record_that_copied_the_pods_routes(monkeypatch, host, multus_pod, tmp_path):
    """Records of earlier versions copied every route of an interface into its table: DEL still removes them."""
    assert on_net1(monkeypatch, host, "ADD", tmp_path)[0] == 0
    path = tmp_path / "networks" / "default" / "attachments" / "c1@net1.json"
    document = json.loads(path.read_text())
    copies = [[ETH0, "0.0.0.0/0", "10.244.0.1", "eth0", False, None],
              [ETH0, "10.244.0.1/32", None, "eth0", False, None], [NET1, "192.168.0.0/16", None, "net1", False, None]]
    document["replyRoutes"] += copies
    document.pop("nodeView", None)
    path.write_text(json.dumps(document))
    for table, dst, gateway, dev, _, _ in copies:
        multus_pod.add_route(dst, dev, protocol="201", table=str(table), gateway=gateway,
                             scope="global" if gateway else "link")
    code, out, err = on_net1(monkeypatch, host, "DEL", tmp_path)
    assert code == 0, (out, err)
    assert ours(multus_pod) == []


def reconcile(host, tmp_path):
    host.calls.clear()
    code, _, err = run_person(host, "reconcile", "--state-dir", str(tmp_path))
    assert code == 0, err
    return entered(host)


def test_a_pass_enters_a_pod_only_when_the_node_changed_what_the_pod_was_made_for(monkeypatch, host, multus_pod,
                                                                                   tmp_path):
    assert on_net1(monkeypatch, host, "ADD", tmp_path)[0] == 0
    assert reconcile(host, tmp_path) == []  # nothing to repair: no pod entered
    host.delete_link("eno1.host")  # the shim's repair does not concern the pod
    assert reconcile(host, tmp_path) == []
    host.links["eno1"]["addresses"] = ["192.168.0.6/16", "fd00::5/64"]  # a DHCP renewal on the master: it does
    assert reconcile(host, tmp_path) != []
    assert (str(ETH0), "192.168.0.6/32") in [(r.get("table"), r["dst"]) for r in multus_pod.routes]
    assert json.loads(record_text(tmp_path))["nodeView"][:2] == ["carried 192.168.0.6/16", "carried fd00::5/64"]
    assert reconcile(host, tmp_path) == []  # made for the node of now


def test_a_pass_enters_the_pod_of_an_older_record_once(monkeypatch, host, multus_pod, tmp_path):
    assert on_net1(monkeypatch, host, "ADD", tmp_path)[0] == 0
    path = tmp_path / "networks" / "default" / "attachments" / "c1@net1.json"
    document = json.loads(path.read_text())
    document.pop("nodeView", None)
    path.write_text(json.dumps(document))
    assert reconcile(host, tmp_path) != []
    assert reconcile(host, tmp_path) == []


def test_a_pod_that_fills_routes_table_is_not_read_whole_and_still_gets_its_del(monkeypatch, host, multus_pod,
                                                                               tmp_path):
    monkeypatch.setattr(pod_routes, "READ_LIMIT", 4096)
    assert on_net1(monkeypatch, host, "ADD", tmp_path)[0] == 0
    for i in range(100):
        multus_pod.add_route(f"172.16.0.{i}/32", "eth0", protocol="201", table=str(ETH0))
    code, out, _ = on_net1(monkeypatch, host, "CHECK", tmp_path)
    assert code == 1 and "the pod holds more than 4096 bytes of rules at 32201, of route's tables" in out["msg"], out
    host.links["eno1"]["addresses"] = ["192.168.0.6/16", "fd00::5/64"]  # a pass must heal the pod: flushed, made anew
    assert reconcile(host, tmp_path) != []
    assert sorted(r["dst"] for r in multus_pod.routes if r.get("table") == str(ETH0)) == ["192.168.0.6/32",
                                                                                           "fd00::5/128"]
    for i in range(100):
        multus_pod.add_route(f"172.16.0.{i}/32", "eth0", protocol="201", table=str(ETH0))
    code, out, err = on_net1(monkeypatch, host, "DEL", tmp_path)
    assert code == 0, (out, err)
    assert ours(multus_pod) == []
