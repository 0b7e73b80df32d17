"""What promises to change nothing changes nothing: doctor, `reconcile --dry-run` and a dry-run Store leave the
state dir byte for byte as it was, whatever it holds (the earlier per-network layout of ownership files
included), and the node too. The earlier layout is moved only by a locked call of the plugin itself.
Real namespaces: tests/e2e/test_read_only.py."""
import json
import os
import shutil
import stat

from helpers import call, multus_pod, netconf, prev_result, run_person
from test_doctor_checks import node_programs

from cniroute.store import Store

SHIM = "eno1.host"


def snapshot(top):
    """Every entry under `top`: its type, mode and content (a symlink's target), byte for byte."""
    found = {}
    for directory, dirs, names in os.walk(top):
        for name in dirs + names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = None
            found[os.path.relpath(path, top)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                 info.st_mtime_ns, content)
    return found


def node(host):
    """The fake node's links, routes, neighbours, nft table and sysctls, and its pods'."""
    return json.dumps([host.links, host.routes, host.neighbours, host.nft, host.sysctls,
                       {path: node(pod) for path, pod in host.pods.items()}], sort_keys=True, default=str)


def legacy_node(monkeypatch, host, state_dir):
    """A pod attached by this version, whose ownership file is then put back where earlier versions kept it
    (networks/NET/ips/IP), as on a node just upgraded."""
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result("192.168.1.2/16"),
                                                            routeViaHost=["10.96.0.0/12"]))
    assert code == 0, (out, err)
    claim = state_dir / "ips" / "192.168.1.2"
    legacy = state_dir / "networks" / "default" / "ips" / "192.168.1.2"
    legacy.parent.mkdir()
    legacy.write_text("c1@eth0")
    claim.unlink()
    return legacy


def test_doctor_moves_no_claim_of_the_earlier_layout_and_still_reads_it(monkeypatch, host, tmp_path):
    legacy_node(monkeypatch, host, tmp_path)
    node_programs(host)
    host.in_node_namespace = False  # (network managers are not asked)
    before, node_before = snapshot(tmp_path), node(host)
    code, out, err = run_person(host, "doctor", "--conf-dir", tmp_path / "none", "--state-dir", tmp_path)
    assert snapshot(tmp_path) == before and node(host) == node_before
    assert "pod 192.168.1.2" in out and "now belongs to" not in out, out  # the legacy claim is the record's


def test_reconcile_dry_run_moves_no_claim_and_repairs_by_it(monkeypatch, host, tmp_path):
    legacy_node(monkeypatch, host, tmp_path)
    host.routes = [r for r in host.routes if r["dev"] != SHIM]
    host.nft = None
    shutil.rmtree(tmp_path / "locks")
    before, node_before = snapshot(tmp_path), node(host)
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path, "--dry-run")
    assert code == 1, err
    assert "dry-run, not run: ip route replace 192.168.1.2/32 dev eno1.host" in err  # the legacy claim counts
    assert snapshot(tmp_path) == before and node(host) == node_before  # not even a lock file


def test_a_dry_run_store_never_writes(monkeypatch, host, tmp_path):
    legacy_node(monkeypatch, host, tmp_path)
    (tmp_path / "networks" / "default" / "attachments" / "x@eth0.json.5.tmp").write_text("")
    before = snapshot(tmp_path)
    store = Store(str(tmp_path), dry_run=True, adopts_older_claims=True)
    record = store.attachment("default", "c1@eth0")
    with store.shim_lock(SHIM):  # (a dry run may create the lock files: they are not compared)
        assert store.owner_of("192.168.1.2/32") == record.claimant
        assert store.claimed() == {"192.168.1.2/32": record.claimant}
        store.claim("192.168.1.3/32", record.claimant)
        store.release("192.168.1.2/32", record.claimant)
        store.save(record._replace(prefixes=["192.168.1.9/32"]))
        store.forget(record.network, record.owner)
        store.sweep_temporaries("default")
    after = snapshot(tmp_path)
    assert after == before


def test_only_a_locked_call_of_the_plugin_moves_the_earlier_layout(monkeypatch, host, tmp_path):
    legacy = legacy_node(monkeypatch, host, tmp_path)
    reader = Store(str(tmp_path))  # not locked: reads, never moves
    assert reader.owner_of("192.168.1.2/32") == "default/c1@eth0" and legacy.exists()
    assert run_person(host, "reconcile", "--state-dir", tmp_path)[0] == 0  # reads claims without moving them
    assert legacy.exists()
    code, out, err = call(monkeypatch, host, "DEL", netconf(tmp_path))
    assert code == 0, (out, err)
    assert not legacy.exists() and host.routes_on(SHIM) == []  # DEL took it over, and removed the pod's route


def test_dry_runs_leave_a_multus_pods_rules_and_reply_tables_as_they_are(monkeypatch, host, tmp_path):
    """reconcile --dry-run after the node's address changed, and the plugin's dryRun on ADD and DEL: each says what
    it would do in the pod of two interfaces, and changes nothing there (nor on the node)."""
    pod = multus_pod(host)
    net1 = {"CNI_IFNAME": "net1"}
    conf = netconf(tmp_path, prev_result("192.168.1.2/16", ifname="net1"))
    before = node(host)
    code, out, err = call(monkeypatch, host, "ADD", {**conf, "dryRun": True}, **net1)
    assert code == 0 and "dry-run, not run: nsenter --net=/var/run/netns/pod1 ip rule add from 10.244.0.2" in err, err
    assert node(host) == before
    assert call(monkeypatch, host, "ADD", conf, **net1)[0] == 0
    assert pod.rules and any(r.get("table", "main") != "main" for r in pod.routes)
    host.links["eno1"]["addresses"] = ["192.168.0.6/16"]  # a DHCP renewal: reconcile would remake the reply paths
    before = node(host)
    code, _, err = run_person(host, "reconcile", "--state-dir", tmp_path, "--dry-run")
    assert code == 1 and "table 2010003" in err and "dry-run, not run: nsenter" in err, err
    assert node(host) == before
    code, out, err = call(monkeypatch, host, "DEL", {**conf, "dryRun": True}, **net1)
    assert code == 0 and "dry-run, not run: nsenter --net=/var/run/netns/pod1 ip rule del" in err, (out, err)
    assert node(host) == before
