"""A pod of two interfaces (Multus: the cluster network on eth0, route on net1) against the fake ip: the reply
paths in the pod (pod_routes), recorded, undone by DEL in either order, verified by CHECK, logged replayably."""
import json

import helpers
import pytest
from helpers import POD_NETNS, call, netconf, prev_result

from cniroute import replay
from cniroute.journal import parse_log

ETH0, NET1 = 2010002, 2010003  # reply_paths.REPLY_TABLE + the fake's ifindex of eth0 (2) and net1 (3)


@pytest.fixture
def multus_pod(host):
    return helpers.multus_pod(host)


def conf(tmp_path, prev=True):
    return netconf(tmp_path, prev_result("192.168.1.2/16", ifname="net1") if prev else None)


def on_net1(monkeypatch, host, command, document, **env):
    return call(monkeypatch, host, command, document, CNI_IFNAME="net1", **env)


def table_routes(pod):
    return sorted((r["table"], r["dst"], r.get("gateway"), r["dev"], bool(r.get("onlink"))) for r in pod.routes
                  if r.get("table", "main") != "main")


def test_each_interface_gets_a_rule_from_its_address_to_a_table_of_its_way_to_the_node(monkeypatch, host,
                                                                                       multus_pod, tmp_path):
    main_before = [r for r in multus_pod.routes]
    code, out, err = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    assert code == 0, (out, err)
    assert multus_pod.rules == [{"src": "10.244.0.2", "table": str(ETH0), "priority": 32201},
                                {"src": "192.168.1.2", "table": str(NET1), "priority": 32201}]
    assert table_routes(multus_pod) == sorted([
        # the node's address main sends out of net1, the way eth0 reaches it (its default route's gateway)
        (str(ETH0), "192.168.0.5/32", "10.244.0.1", "eth0", True),
        # the node's other address (ptp's veth), through the one the shim carries
        (str(NET1), "10.244.0.1/32", "192.168.0.5", "net1", True)])
    assert [r for r in multus_pod.routes if r.get("table", "main") == "main"] == main_before  # main as it was
    record = json.loads((tmp_path / "networks" / "default" / "attachments" / "c1@net1.json").read_text())
    assert record["replyRules"] == [["10.244.0.2", ETH0], ["192.168.1.2", NET1]]


def test_the_pod_side_is_two_reads_and_a_change_and_the_log_replays(monkeypatch, host, multus_pod, tmp_path):
    _, _, log = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    entered = [argv for argv in host.calls if argv[0] == "nsenter"]
    assert [argv[2:] for argv in entered if "-json" in argv] == [
        ["ip", "-json", "-d", "-force", "-batch", "-"]] * 3  # the pod's addresses; eth0's way to the node; route's
    # tables, for a route route did not make there
    (block,) = parse_log(log)
    assert [line for line in block.lines if line.startswith("nsenter")] == [
        f"nsenter --net={POD_NETNS} ip " + " ".join(argv[3:]) for argv in entered if "-json" not in argv]
    assert all(replay.replayable(line) for line in block.lines), block.lines
    _, _, log = on_net1(monkeypatch, host, "DEL", conf(tmp_path))
    assert all(replay.replayable(line) for line in parse_log(log)[0].lines)


def test_del_puts_the_pod_back_as_it_was(monkeypatch, host, multus_pod, tmp_path):
    before = json.dumps([multus_pod.routes, multus_pod.rules])
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    assert multus_pod.rules and table_routes(multus_pod)
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert json.dumps([multus_pod.routes, multus_pod.rules]) == before


def test_del_after_the_cluster_network_is_gone(monkeypatch, host, multus_pod, tmp_path):
    """eth0's DEL first: its link and its routes (those of our table too) went with it; the rules did not."""
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    assert len(multus_pod.rules) == 2
    multus_pod.delete_link("eth0")
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path, prev=False))[0] == 0
    assert multus_pod.rules == [] and table_routes(multus_pod) == []


def test_a_repeated_add_keeps_one_rule_each(monkeypatch, host, multus_pod, tmp_path):
    for _ in range(2):
        code, out, err = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
        assert code == 0, (out, err)
    assert len(multus_pod.rules) == 2


def test_add_fails_when_a_reply_path_cannot_be_made(monkeypatch, host, multus_pod, tmp_path):
    multus_pod.failures[("rule", "add")] = (2, "RTNETLINK answers: Operation not supported\n")
    code, out, _ = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    assert code == 1 and out["code"] == 100 and "no rule from 10.244.0.2 lookup 2010002" in out["details"], out


def test_check_names_what_is_missing(monkeypatch, host, multus_pod, tmp_path):
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    assert on_net1(monkeypatch, host, "CHECK", netconf(tmp_path, prev_result("192.168.1.2/16", ifname="net1"),
                                                       version="1.0.0"))[0] == 0
    multus_pod.rules.pop(0)
    multus_pod.routes = [r for r in multus_pod.routes if r.get("table") != str(NET1)]
    _, out, _ = on_net1(monkeypatch, host, "CHECK", conf(tmp_path))
    assert "no rule from 10.244.0.2 lookup 2010002 in the pod" in out["msg"]
    assert "no route to 10.244.0.1/32 dev net1 in the pod's table 2010003" in out["msg"]


def test_check_after_the_cluster_networks_del_passes(monkeypatch, host, multus_pod, tmp_path):
    """Either DEL may come first (docs/multus.md): once eth0's DEL has taken eth0 (its routes, those of our
    table too, went with it; the rules did not), the pod has one interface, which needs no reply path."""
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    multus_pod.delete_link("eth0")
    code, out, err = on_net1(monkeypatch, host, "CHECK", conf(tmp_path))
    assert code == 0, (out, err)


def test_check_after_another_secondary_networks_del_still_names_what_is_missing(monkeypatch, host, multus_pod,
                                                                                 tmp_path):
    """A third interface's DEL takes only what was of that interface: eth0's reply path is still required."""
    multus_pod.add_link("net2", addresses=["10.30.0.2/24"])
    multus_pod.add_route("10.30.0.0/24", "net2", protocol="kernel")
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    assert len(multus_pod.rules) == 3
    multus_pod.delete_link("net2")
    assert on_net1(monkeypatch, host, "CHECK", conf(tmp_path))[0] == 0
    multus_pod.routes = [r for r in multus_pod.routes if r.get("table") != str(ETH0)]
    _, out, _ = on_net1(monkeypatch, host, "CHECK", conf(tmp_path))
    assert "no route to 192.168.0.5/32 dev eth0 in the pod's table 2010002" in out["msg"], out
    assert "net2" not in out["msg"] and "10.30.0" not in out["msg"], out


def test_a_route_in_a_reply_table_that_is_not_ours_is_neither_taken_nor_deleted(monkeypatch, host, multus_pod,
                                                                                 tmp_path):
    """Someone's route in the table route uses for net1, to a destination route would put there: ADD leaves it
    as it is (and says so in its log), and DEL does not delete it."""
    multus_pod.add_route("10.244.0.1/32", "net1", protocol="static", table=str(NET1))
    theirs = dict(multus_pod.routes[-1])
    code, out, err = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    assert code == 0, (out, err)
    assert theirs in multus_pod.routes
    assert f"table {NET1} has a route to 10.244.0.1/32 that route did not make: left as it is" in err, err
    assert on_net1(monkeypatch, host, "CHECK", conf(tmp_path))[0] == 0
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert theirs in multus_pod.routes and multus_pod.rules == []


def test_a_pod_of_one_interface_is_left_alone(monkeypatch, host, tmp_path):
    pod = host.pod(POD_NETNS, addresses=["192.168.1.2/16"])
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))[0] == 0
    assert pod.rules == [] and pod.routes == []
    assert not [argv for argv in host.calls if argv[0] == "nsenter" and "-json" not in argv]
    record = json.loads((tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json").read_text())
    assert "replyRules" not in record


def test_dual_stack_rules_go_in_an_ip_6_batch_of_their_own(monkeypatch, host, tmp_path):
    pod = helpers.multus_pod(host, ipv6=True)
    code, out, err = on_net1(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16", "fd00::100/64",
                                                                                  ifname="net1")))
    assert code == 0, (out, err)
    assert [(r["src"], r["table"]) for r in pod.rules] == [
        ("10.244.0.2", str(ETH0)), ("192.168.1.2", str(NET1)), ("fd44::2", str(ETH0)), ("fd00::100", str(NET1))]
    assert [argv[2:5] for argv in host.calls if argv[0] == "nsenter" and "rule" in argv] == [
        ["ip", "rule", "add"], ["ip", "rule", "add"], ["ip", "-6", "rule"], ["ip", "-6", "rule"]]
    assert (str(NET1), "fd44::1/128", "fd00::5", "net1", True) in table_routes(pod)
    assert (str(ETH0), "fd00::5/128", "fd44::1", "eth0", True) in table_routes(pod)
    assert on_net1(monkeypatch, host, "DEL", netconf(tmp_path))[0] == 0
    assert pod.rules == [] and table_routes(pod) == []


def test_without_nsenter_a_pod_that_needs_nothing_inside_still_gets_its_add(monkeypatch, host, multus_pod, tmp_path):
    host.on_path.discard("nsenter")
    code, out, err = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    assert code == 0, (out, err)
    assert multus_pod.rules == [] and not [argv for argv in host.calls if argv[0] == "nsenter"]


def test_two_route_attachments_in_one_pod_share_rules_as_docs_say(monkeypatch, host, multus_pod, tmp_path):
    """docs/multus.md, what cannot work: the second ADD keeps the first's rules and records them too, so its DEL
    takes what the first still uses, and the first's CHECK says so."""
    multus_pod.add_link("net2", addresses=["192.168.2.2/16"])
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    net2 = netconf(tmp_path, prev_result("192.168.2.2/16", ifname="net2"))
    assert call(monkeypatch, host, "ADD", net2, CNI_IFNAME="net2")[0] == 0
    assert len(multus_pod.rules) == 3  # eth0's, net1's, net2's: each once
    assert call(monkeypatch, host, "DEL", net2, CNI_IFNAME="net2")[0] == 0
    _, out, _ = on_net1(monkeypatch, host, "CHECK", conf(tmp_path))
    assert "no rule from 10.244.0.2 lookup 2010002 in the pod" in out["msg"]


def test_a_record_of_an_older_version_still_dels(monkeypatch, host, multus_pod, tmp_path):
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    path = tmp_path / "networks" / "default" / "attachments" / "c1@net1.json"
    record = json.loads(path.read_text())
    del record["replyRules"], record["replyRoutes"]
    path.write_text(json.dumps(record))
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert host.routes_on("eno1.host") == []
    assert not path.exists()


@pytest.mark.parametrize("entry", [
    {"replyRules": [["10.244.0.2", "2010002"]]}, {"replyRules": [["10.244.0.2"]]},
    {"replyRules": [["not-an-address", 2010002]]},
    {"replyRoutes": [[2010002, "0.0.0.0/0", "10.244.0.1", "eth0; reboot", False, None]]},
    {"replyRoutes": [[2010002, "0.0.0.0/0", "10.244.0.1", "eth0", "yes", None]]},
    {"replyRoutes": [[-1, "0.0.0.0/0", None, "eth0", False, None]]},
    *({"replyRoutes": [[2010002, "0.0.0.0/0", None, dev, False, None]]} for dev in ("a/b", "a:b", "..", "x" * 16))])
def test_a_record_with_a_malformed_reply_path_is_not_ours(tmp_path, entry):
    from cniroute.records import Attachment

    document = {"containerID": "c1", "ifname": "net1", "network": "default", "master": "eno1",
                "bridge": "eno1.host", "prefixes": [], "viaHost": [], **entry}
    assert Attachment.from_json(document) is None
    assert Attachment.from_json({**document, **{key: [] for key in entry}}) is not None


def test_reconcile_makes_the_reply_paths_again_for_the_nodes_new_address(monkeypatch, host, multus_pod, tmp_path):
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    host.links["eno1"]["addresses"] = ["192.168.0.6/16"]  # a DHCP renewal on the master
    code, _, err = helpers.run_person(host, "reconcile", "--state-dir", str(tmp_path))
    assert code == 0, err
    healed = (str(NET1), "10.244.0.1/32", "192.168.0.6", "net1", True)  # the other node address, via the new one
    assert healed in table_routes(multus_pod)
    assert (str(NET1), "10.244.0.1/32", "192.168.0.5", "net1", True) not in table_routes(multus_pod)
    record = json.loads((tmp_path / "networks" / "default" / "attachments" / "c1@net1.json").read_text())
    assert [NET1, "10.244.0.1/32", "192.168.0.6", "net1", True, None] in record["replyRoutes"]
    code, _, err = helpers.run_person(host, "reconcile", "--state-dir", str(tmp_path))
    assert code == 0 and "in shape" in err, err  # the second pass changes nothing
    assert on_net1(monkeypatch, host, "CHECK", conf(tmp_path))[0] == 0
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert multus_pod.rules == [] and table_routes(multus_pod) == []


def test_reconcile_leaves_a_route_it_did_not_make_in_a_reply_table(monkeypatch, host, multus_pod, tmp_path):
    """The pod put its own route where route's went (to the node's other address): the pass after a renewal
    neither takes it over nor deletes it, puts none of route's there and says so; DEL leaves it too."""
    assert on_net1(monkeypatch, host, "ADD", conf(tmp_path))[0] == 0
    multus_pod.routes = [r for r in multus_pod.routes if r.get("table") != str(NET1)]
    multus_pod.add_route("10.244.0.1/32", "net1", protocol="static", table=str(NET1))
    theirs = dict(multus_pod.routes[-1])
    host.links["eno1"]["addresses"] = ["192.168.0.6/16"]  # a DHCP renewal on the master
    code, _, err = helpers.run_person(host, "reconcile", "--state-dir", str(tmp_path))
    assert code == 0, err
    assert f"table {NET1} has a route to 10.244.0.1/32 that route did not make: left as it is" in err, err
    assert [r for r in multus_pod.routes if r.get("table") == str(NET1)] == [theirs]
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert theirs in multus_pod.routes and multus_pod.rules == []


def test_an_add_that_fails_after_the_nodes_route_is_in_is_undone_by_a_del_without_prev_result(
        monkeypatch, host, multus_pod, tmp_path):
    """Crash consistency: the runtime answers a failed ADD with a DEL, and may have no prevResult to give it. The
    record is written before anything changes, so DEL takes out what the ADD put in, on the node and in the pod."""
    via = {"routeViaHost": ["10.96.0.0/12"]}
    before = json.dumps([[r for r in multus_pod.routes], multus_pod.rules])
    multus_pod.failures[("rule", "add")] = (2, "RTNETLINK answers: Operation not supported\n")
    code, out, _ = on_net1(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16", ifname="net1"),
                                                             **via))
    assert code == 1 and out["code"] == 100, out
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"] and (tmp_path / "ips" / "192.168.1.2").exists()
    assert table_routes(multus_pod) and any(r["dst"] == "10.96.0.0/12" for r in multus_pod.routes)
    del multus_pod.failures[("rule", "add")]
    code, out, err = on_net1(monkeypatch, host, "DEL", netconf(tmp_path, **via))
    assert code == 0, (out, err)
    assert host.routes_on("eno1.host") == [] and not (tmp_path / "ips" / "192.168.1.2").exists()
    assert list((tmp_path / "networks" / "default" / "attachments").iterdir()) == []
    assert json.dumps([multus_pod.routes, multus_pod.rules]) == before


@pytest.mark.parametrize("dev", ["x@y", "net1@if3", "#", "é" * 7, "-x", "x" * 15])
def test_a_record_names_any_interface_the_kernel_takes_and_reads_it_back(dev):
    """A pod's other interfaces are named by other plugins or the pod: what the kernel takes, a record holds."""
    from cniroute.records import Attachment, TableRoute

    document = {"containerID": "c1", "ifname": "net1", "network": "default", "master": "eno1",
                "bridge": "eno1.host", "prefixes": [], "viaHost": [], "replyRules": [["10.244.0.2", 2010002]],
                "replyRoutes": [[2010002, "0.0.0.0/0", "10.244.0.1", dev, False, None]]}
    read = Attachment.from_json(json.loads(json.dumps(Attachment.from_json(document).to_json())))
    assert read.reply_routes == [TableRoute(2010002, "0.0.0.0/0", "10.244.0.1", dev, False, None)]



def test_an_interface_named_x_at_y_gets_its_reply_path_and_one_ip_printed_from_no_utf_8_gets_none(
        monkeypatch, host, multus_pod, tmp_path):
    """Names come from the pod: any the kernel takes is used and recorded; one that ip printed from bytes that
    were no UTF-8 (U+FFFD) names no interface any command could reach, so it gets no reply path."""
    for name, address in (("x@y", "10.98.0.2/24"), ("bad\ufffd", "10.99.0.2/24")):
        multus_pod.add_link(name, addresses=[address])
        multus_pod.add_route(address.replace(".2/", ".0/"), name, protocol="kernel")
    code, out, err = on_net1(monkeypatch, host, "ADD", conf(tmp_path))
    assert code == 0, (out, err)
    record = json.loads((tmp_path / "networks" / "default" / "attachments" / "c1@net1.json").read_text())
    assert {route[3] for route in record["replyRoutes"]} == {"eth0", "net1", "x@y"}
    (block,) = parse_log(err)
    assert any(" dev x@y " in line for line in block.lines)
    assert all(replay.replayable(line) for line in block.lines), block.lines  # route replay takes them
    assert "10.99.0.2" not in [address for address, _ in record["replyRules"]]
    assert on_net1(monkeypatch, host, "DEL", conf(tmp_path))[0] == 0
    assert multus_pod.rules == []
