"""`route reconcile` (one pass) against the fake ip: what it puts back, and what it must never touch."""
import json

from helpers import call, netconf, prev_result, run_person

from cniroute import replay
from cniroute.journal import parse_log
from cniroute.records import Attachment
from cniroute.store import Store

SHIM = "eno1.host"


def add(monkeypatch, host, state_dir, container, *addresses, **keys):
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result(*addresses), **keys),
                          CNI_CONTAINERID=container)
    assert code == 0, (out, err)


def reconcile(host, state_dir, *options):
    return run_person(host, "reconcile", "--state-dir", state_dir, *options)


def test_a_deleted_shim_comes_back_with_its_mac_and_every_pods_route(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16", "fd00::100/64")
    mac = host.links[SHIM]["mac"]
    host.delete_link(SHIM)
    code, _, err = reconcile(host, tmp_path)
    assert code == 0, err
    made = host.links[SHIM]
    assert (made["kind"], made["mode"], made["parent"], made["up"], made["mac"]) == \
        ("macvlan", "bridge", "eno1", True, mac)
    assert host.addresses_of(SHIM) == ["192.168.0.5/16", "fd00::5/64"]
    assert host.routes_on(SHIM) == ["192.168.1.2/32", "192.168.1.3/32", "fd00::100/128"]
    assert f"{SHIM}: repaired" in err
    before = len(host.calls)
    assert reconcile(host, tmp_path)[0] == 0
    assert [c for c in host.calls[before:] if "-batch" not in c and "list" not in c] == []  # in shape: no change


def test_every_drift_of_the_shim_is_repaired(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.links[SHIM].update(up=False, mtu=1400)
    host.links[SHIM]["addresses"].remove("fd00::5/64")
    host.sysctls[f"net/ipv4/conf/{SHIM}/arp_filter"] = "0"
    host.routes = [r for r in host.routes if r["dev"] != SHIM]  # a shim set down loses its routes
    code, _, err = reconcile(host, tmp_path)
    assert code == 0, err
    assert (host.links[SHIM]["up"], host.links[SHIM]["mtu"]) == (True, 1500)
    assert host.addresses_of(SHIM) == ["192.168.0.5/16", "fd00::5/64"]
    assert host.sysctls[f"net/ipv4/conf/{SHIM}/arp_filter"] == "1"
    assert host.routes_on(SHIM) == ["192.168.1.2/32"]


def test_nothing_recorded_means_nothing_created(host, tmp_path):
    for state_dir in (tmp_path / "absent", tmp_path):
        code, _, err = reconcile(host, state_dir)
        assert code == 0 and "nothing to do" in err, err
    assert SHIM not in host.links and host.changes() == []


def test_a_foreign_device_with_the_shims_name_is_left_untouched_and_reported(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.delete_link(SHIM)
    host.add_link(SHIM, kind="veth", parent="peer0", up=False, mtu=9000)
    before = json.dumps(host.links[SHIM])
    changes = len(host.changes())
    code, _, err = reconcile(host, tmp_path)
    assert code == 1
    assert f"device {SHIM} exists but is not this plugin's shim: it is a veth device" in err
    assert json.dumps(host.links[SHIM]) == before and host.changes()[changes:] == []
    assert host.routes_on(SHIM) == []


def test_a_missing_master_is_reported(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.delete_link(SHIM)
    host.delete_link("eno1")
    code, _, err = reconcile(host, tmp_path)
    assert code == 1 and "master eno1 does not exist" in err, err
    assert SHIM not in host.links


def test_a_pod_route_is_never_taken_from_the_attachment_that_owns_the_address_now(monkeypatch, host, tmp_path):
    """Pod `old` (on eno2's shim) still has a record for 192.168.1.2, which IPAM has given to pod `new` (the
    network's master is eno1 now). Only `new` gets a route to it, however often reconcile runs."""
    host.add_link("eno2", addresses=["10.0.0.5/8"])
    add(monkeypatch, host, tmp_path, "old", "192.168.1.2/16", master="eno2")
    add(monkeypatch, host, tmp_path, "new", "192.168.1.2/16")
    assert [(r["dst"], r["dev"]) for r in host.routes if r["protocol"] == "201"] == [("192.168.1.2/32", SHIM)]
    for _ in range(2):
        code, _, err = reconcile(host, tmp_path)
        assert code == 0, err
        assert [(r["dst"], r["dev"]) for r in host.routes if r["protocol"] == "201"] == [("192.168.1.2/32", SHIM)]
        host.routes = [r for r in host.routes if r["protocol"] != "201"]  # then all of them are flushed
    assert "eno2.host" in host.links  # its shim is kept in shape all the same


def test_a_pod_whose_del_ran_does_not_come_back(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16")
    assert call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="b")[0] == 0
    host.delete_link(SHIM)
    assert reconcile(host, tmp_path)[0] == 0
    assert host.routes_on(SHIM) == ["192.168.1.2/32"]


def test_the_masquerade_rule_of_route_via_host_comes_back(monkeypatch, host, tmp_path):
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16", routeViaHost=["10.96.0.0/12"])
    host.nft = None  # somebody ran `nft flush ruleset`
    code, _, err = reconcile(host, tmp_path)
    assert code == 0, err
    assert sorted(host.nft["rules"].values()) == [f"{SHIM} ip", f"{SHIM} ip6"]  # one rule per family


def test_dry_run_changes_nothing_and_says_what_is_wrong(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.delete_link(SHIM)
    changes = len(host.changes())
    code, _, err = reconcile(host, tmp_path, "--dry-run")
    assert code == 1
    assert f"shim {SHIM} does not exist" in err and "dry-run, not run: ip link add name eno1.host" in err
    assert host.changes()[changes:] == [] and SHIM not in host.links


def test_a_failing_repair_is_reported(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.routes = []
    host.failures[("route", "replace")] = (2, "RTNETLINK answers: Operation not permitted")
    code, _, err = reconcile(host, tmp_path)
    assert code == 1 and "Operation not permitted" in err and f"{SHIM}: NOT in shape" in err


def test_repairs_are_logged_where_the_config_logs_and_replay(monkeypatch, host, tmp_path):
    log = tmp_path / "log" / "route.log"
    add(monkeypatch, host, tmp_path / "state", "a", "192.168.1.2/16", logFile=str(log))
    host.delete_link(SHIM)
    code, _, err = reconcile(host, tmp_path / "state")
    assert code == 0, err
    block = parse_log(log.read_text())[-1]
    assert (block.command, block.fields["shim"], block.fields["network"]) == ("RECONCILE", SHIM, "default")
    assert block.lines[0].startswith(f"ip link add name {SHIM} link eno1 address ")
    assert [line for line in block.lines if replay.replayable(line) is None] == []
    lines = len(log.read_text().splitlines())
    assert reconcile(host, tmp_path / "state")[0] == 0
    assert len(log.read_text().splitlines()) == lines  # a pass that changes nothing logs nothing


def test_log_file_option_wins(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path / "state", "a", "192.168.1.2/16", logFile=str(tmp_path / "config.log"))
    host.delete_link(SHIM)
    assert reconcile(host, tmp_path / "state", "--log-file", tmp_path / "mine.log")[0] == 0
    assert parse_log((tmp_path / "mine.log").read_text())[-1].command == "RECONCILE"
    assert "RECONCILE" not in (tmp_path / "config.log").read_text()


def test_records_written_before_log_file_was_recorded_stay_readable(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16", logFile=str(tmp_path / "route.log"))
    [path] = (tmp_path / "networks" / "default" / "attachments").iterdir()
    document = json.loads(path.read_text())
    assert (document["logFile"], document["logMaxBytes"]) == (str(tmp_path / "route.log"), 10 << 20)
    del document["logFile"], document["logMaxBytes"]
    path.write_text(json.dumps(document))
    record = Attachment.from_json(document)
    assert record is not None and record.log_file is None
    host.delete_link(SHIM)
    code, _, err = reconcile(host, tmp_path)
    assert code == 0 and f"# shim: {SHIM}" in err  # the block went to stderr


def test_a_del_that_runs_while_the_pass_waits_for_the_lock_is_not_undone(monkeypatch, host, tmp_path):
    """The pass has listed the records when a DEL takes the shim's lock first: the pass reads them again
    inside the lock, so neither the deleted pod's route nor its masquerade rule (it was the last pod with
    routeViaHost) comes back."""
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.3/16"])
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16", routeViaHost=["10.96.0.0/12"])
    host.routes = [r for r in host.routes if r["dev"] != SHIM]
    take_lock, deleted = Store.shim_lock, []

    def del_first(store, shim_name):
        if not deleted:  # the pass's first lock: the DEL (whose own lock passes through here) gets it first
            deleted.append("running")
            deleted.append(call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="b")[0])
        return take_lock(store, shim_name)

    monkeypatch.setattr(Store, "shim_lock", del_first)
    assert reconcile(host, tmp_path)[0] == 0
    assert deleted == ["running", 0] and host.routes_on(SHIM) == ["192.168.1.2/32"] and host.nft is None
