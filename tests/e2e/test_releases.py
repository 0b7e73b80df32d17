"""Upgrade and rollback between releases, for real: pods ADDed by one release through the real libcni, then
CHECKed, reconciled, looked at by doctor, DELed and GCed by the other, on records that release's own code wrote.

The previous release (lifecycle.PREVIOUS_RELEASE, 0.1.0) is its own one-file build, made from git history.
After an upgrade this release reads its records (format 1); after a rollback it DELs and GCs this release's
(format 2). Either way the node ends clean and every DELed pod's namespace is as it was before the ADD. Two
kinds of pod: one with routeViaHost (the node's nft table, routes inside the pod) and a Multus pod of two
interfaces (reply rules and tables inside the pod).
"""
import json
import subprocess

import pytest
from lifecycle import PREVIOUS_RELEASE, Node, cid, our_routes, previous_release, records

from beds.runtime import NODE_PATH, SetupError
from beds.topology import SHIM


@pytest.fixture(scope="session")
def previous_build():
    try:
        return previous_release()
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(params=["route-via-host", "multus"])
def node(request, cni, topo, chain, tmp_path, route_plugin, previous_build):
    return Node(request.param, cni, topo, chain, tmp_path, route_plugin, previous_build)


def test_the_previous_release_is_built_from_its_commit(previous_build):
    version = subprocess.run(["env", "-i", f"PATH={NODE_PATH}", str(previous_build), "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith(f"route {PREVIOUS_RELEASE[0]} "), version


def test_upgrade_this_release_takes_over_the_pods_of_the_previous_one(node):
    (deleted, deleted_ips, deleted_before), (collected, _, _) = node.add("previous"), node.add("previous")
    assert node.formats() == [None, None]  # format 1, as the previous release writes it
    for pod in (deleted, collected):
        node.check("this", pod)
    # reconcile reads the old records: it puts back a route taken away
    assert node.topo.node_exec(["ip", "route", "del", deleted_ips[0], "dev", SHIM]).returncode == 0
    reconciled = node.person("this", "reconcile", "--state-dir", str(node.state))
    assert reconciled.returncode == 0, reconciled
    assert deleted_ips[0] in our_routes(node.topo)
    node.check("this", deleted)
    # doctor names both pods by their records, healthy
    doctor = node.person("this", "doctor", "--json", "--state-dir", str(node.state), "--conflist",
                         str(node.route_chain))
    report = json.loads(doctor.stdout)
    assert report["counts"]["FAIL"] == 0, report
    healthy = " ".join(c["found"] for c in report["checks"] if c["verdict"] == "OK")
    assert cid(deleted) in healthy and cid(collected) in healthy, report
    node.delete("this", deleted)
    assert node.pod_snapshot(deleted) == deleted_before
    node.gc("this", valid=[])
    node.assert_clean()


def test_rollback_the_previous_release_dels_and_gcs_the_pods_of_this_one(node):
    (deleted, _, deleted_before), (collected, _, _) = node.add("this"), node.add("this")
    assert node.formats() == [2, 2]
    node.check("previous", deleted)
    node.delete("previous", deleted)
    assert node.pod_snapshot(deleted) == deleted_before
    node.gc("previous", valid=[cid(collected)])  # what the runtime still lists stays
    assert [path.stem for path in records(node.state)] == [f"{cid(collected)}@{node.ifname}"]
    node.gc("previous", valid=[])
    node.assert_clean()
