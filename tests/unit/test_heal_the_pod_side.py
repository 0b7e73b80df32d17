"""`route reconcile` heals the pod side too: after the node's address changed, a running pod on a bare-master
node gets its on-link route to the new address and its routeViaHost routes through it, in the namespace ADD
named and only while that is still the pod's. Real namespaces: tests/e2e/test_self_healing.py."""
import json

import pytest
from helpers import POD_NETNS, call, netconf, prev_result, run_person
from test_node_addresses import bare, pod_routes, record  # noqa: F401 (bare: a fixture)

VIA = ["10.96.0.0/12"]


@pytest.fixture
def moved(monkeypatch, bare, pod, tmp_path):  # noqa: F811
    """A running pod attached with routeViaHost, then the node's address on eth1 changes (a DHCP renewal)."""
    bare.links["eth1"]["addresses"] = ["10.20.0.5/24", "fd20::5/64"]
    code, out, err = call(monkeypatch, bare, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16"), routeViaHost=VIA))
    assert code == 0, (out, err)
    assert pod_routes(pod) == [("10.20.0.5/32", None, "eth0", "201", "link"),
                               ("10.96.0.0/12", "10.20.0.5", "eth0", "201", "global")]
    bare.links["eth1"]["addresses"] = ["10.20.0.7/24", "fd20::5/64"]
    return bare


def reconcile(host, state_dir, *options):
    return run_person(host, "reconcile", "--state-dir", state_dir, *options)


HEALED = [("10.20.0.7/32", None, "eth0", "201", "link"), ("10.96.0.0/12", "10.20.0.7", "eth0", "201", "global")]


def test_the_pod_gets_its_routes_to_the_nodes_new_address_and_none_to_the_old(moved, pod, tmp_path):
    code, _, err = reconcile(moved, tmp_path)
    assert code == 0, err
    assert moved.addresses_of("eno1.host") == ["10.20.0.7/24", "fd20::5/64"]
    assert pod_routes(pod) == HEALED
    kept = record(tmp_path)
    assert (kept["onLink"], kept["viaHost"]) == (["10.20.0.7/32"], [["10.96.0.0/12", "10.20.0.7"]])
    code, _, err = reconcile(moved, tmp_path)
    assert code == 0 and "eno1.host: in shape" in err, err  # the second pass changes nothing
    assert pod_routes(pod) == HEALED
    assert call_check(moved, tmp_path) == (0, None)  # CHECK agrees: the pod is as ADD would make it now


def call_check(host, tmp_path):
    monkeypatch = pytest.MonkeyPatch()
    try:
        return call(monkeypatch, host, "CHECK", netconf(tmp_path, prev_result("192.168.1.2/16"),
                                                        routeViaHost=VIA))[:2]
    finally:
        monkeypatch.undo()


def test_a_namespace_at_the_path_that_is_another_one_now_is_left_alone_and_named(moved, pod, tmp_path):
    del moved.namespace_ids[POD_NETNS]  # the path was made again: another namespace, with the pod's address even
    before = pod_routes(pod)
    code, _, err = reconcile(moved, tmp_path)
    assert code == 1, err
    [line] = [line for line in err.splitlines() if line.startswith("route reconcile: eno1.host:")]
    assert "NOT in shape" in line and line.count(f"pod c1@eth0: {POD_NETNS} is another network namespace now") == 1
    assert pod_routes(pod) == before and record(tmp_path)["onLink"] == ["10.20.0.5/32"]


def test_a_record_of_an_older_version_with_the_namespaces_device_and_inode_is_healed_as_before(moved, pod, tmp_path):
    path = tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json"
    document = json.loads(path.read_text())
    del document["netnsCookie"]  # what versions before the cookie wrote:
    document["netnsID"] = moved.identify_namespace(POD_NETNS, like="4:1")
    path.write_text(json.dumps(document))
    code, _, err = reconcile(moved, tmp_path)
    assert code == 0, err
    assert pod_routes(pod) == HEALED and record(tmp_path)["netnsID"] == document["netnsID"]


NSENTER_REFUSED = "nsenter: reassociate to namespace 'ns/net' failed: Operation not permitted"


@pytest.mark.parametrize("why", ["the path is gone", "nsenter may not enter", "nsenter is missing"])
def test_a_pod_that_cannot_be_entered_is_named_with_the_reason_and_the_pass_is_not_in_shape(moved, pod, tmp_path,
                                                                                            why):
    before = pod_routes(pod)
    if why == "the path is gone":
        moved.namespaces.discard(POD_NETNS)
        reason = "No such file or directory"
    elif why == "nsenter may not enter":  # a watcher without CAP_SYS_ADMIN
        moved.programs["nsenter"] = lambda args: (1, "", NSENTER_REFUSED + "\n")
        reason = NSENTER_REFUSED
    else:
        moved.on_path.discard("nsenter")
        reason = "nsenter is not on PATH"
    code, _, err = reconcile(moved, tmp_path)
    assert code == 1, err
    [line] = [line for line in err.splitlines() if line.startswith("route reconcile: eno1.host:")]
    assert "NOT in shape" in line and line.count("pod c1@eth0") == 1, err
    assert f"pod c1@eth0: cannot enter its network namespace {POD_NETNS}: {reason}" in line, err
    assert pod_routes(pod) == before and record(tmp_path)["onLink"] == ["10.20.0.5/32"]


def test_the_same_namespace_without_the_pods_address_is_left_alone(moved, pod, tmp_path):
    pod.links["eth0"]["addresses"] = ["192.168.1.9/16"]  # another pod's interface
    before = pod_routes(pod)
    assert reconcile(moved, tmp_path)[0] == 0
    assert pod_routes(pod) == before


def test_a_pod_whose_address_belongs_to_another_attachment_now_is_left_alone(moved, pod, tmp_path):
    (tmp_path / "ips" / "192.168.1.2").write_text("default/newer@eth0")
    before = pod_routes(pod)
    reconcile(moved, tmp_path)
    assert pod_routes(pod) == before


def test_a_record_of_an_older_version_without_the_namespace_is_left_alone(moved, pod, tmp_path):
    path = tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json"
    document = json.loads(path.read_text())
    del document["netns"], document["netnsCookie"]
    path.write_text(json.dumps(document))
    before = pod_routes(pod)
    assert reconcile(moved, tmp_path)[0] == 0
    assert pod_routes(pod) == before and moved.addresses_of("eno1.host") == ["10.20.0.7/24", "fd20::5/64"]


def test_a_dry_run_says_what_it_would_put_in_the_pod_and_changes_nothing(moved, pod, tmp_path):
    before, kept = pod_routes(pod), record(tmp_path)
    code, _, err = reconcile(moved, tmp_path, "--dry-run")
    assert code == 1
    assert f"dry-run, not run: nsenter --net={POD_NETNS} ip route replace 10.20.0.7/32 dev eth0" in err, err
    assert pod_routes(pod) == before and record(tmp_path) == kept


def test_a_pass_that_repairs_the_shim_but_cannot_heal_a_pod_exits_1_and_names_the_pod(moved, pod, tmp_path):
    pod.failures[("route", "replace")] = (2, "RTNETLINK answers: Operation not permitted\n")
    code, _, err = reconcile(moved, tmp_path)
    assert moved.addresses_of("eno1.host") == ["10.20.0.7/24", "fd20::5/64"]  # the shim was repaired
    assert code == 1, err
    assert "eno1.host: NOT in shape" in err and "pod c1@eth0: " in err and "Operation not permitted" in err, err
    assert "eno1.host: in shape" not in err and "eno1.host: repaired" not in err, err
