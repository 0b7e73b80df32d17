"""Upgrade and rollback between releases, for real: pods ADDed by one release through the real libcni, then
CHECKed, reconciled, looked at by doctor, DELed and GCed by the other, on records that release's own code wrote.

The previous release (releases.PREVIOUS_RELEASE, 0.1.0) is its own one-file build, made from git history.
After an upgrade this release reads its records (format 1); after a rollback it DELs and GCs this release's
(format 2). Either way the node ends clean and every DELed pod's namespace is as it was before the ADD. Two
kinds of pod: one with routeViaHost (the node's nft table, routes inside the pod) and a Multus pod of two
interfaces (reply rules and tables inside the pod).
"""
import json
import os
import subprocess

import pytest
from e2e_support import MASTER, SHIM, Cni, node_sysctl, ok, pod_ips
from releases import PREVIOUS_RELEASE, claims, namespace_snapshot, our_routes, previous_release, records
from test_multus import Bed

import netns

VIA = ["10.96.0.0/12"]
NETWORK = "rtt-route"  # the route network of both kinds of pod


@pytest.fixture(scope="session")
def previous_build():
    try:
        return previous_release()
    except netns.SetupError as e:
        pytest.fail(str(e), pytrace=False)


class Node:
    """The node, the chains of one kind of pod, and a Cni per release (one libcni cache: one runtime)."""

    def __init__(self, kind, cni, topo, chain, tmp_path, route_plugin, previous_build):
        self.topo, self.state = topo, tmp_path / "route-state"
        old_path = netns.make_cni_path(tmp_path / "cni-bin-previous", previous_build)
        self.plugins = {"this": route_plugin, "previous": previous_build}
        self.cni = {"this": cni, "previous": Cni(topo, cni.driver, old_path, cni.cache_dir)}
        if kind == "route-via-host":
            node_sysctl(topo, "net.ipv4.ip_forward", 1)
            self.chains = [(chain(routeViaHost=VIA), "eth0")]
            self.route_keys = {"routeViaHost": VIA}
        else:
            bed = Bed(cni, topo, tmp_path, "node-nic")
            os.symlink(netns.REFERENCE_PLUGINS / "ptp", os.path.join(old_path, "ptp"))
            self.chains = [(bed.primary, "eth0"), (bed.secondary, "net1")]
            self.route_keys = {}
        self.route_chain, self.ifname = self.chains[-1]
        assert json.loads(self.route_chain.read_text())["name"] == NETWORK

    def add(self, release):
        """A new pod, every attachment ADDed: (pod, its addresses on route's interface, its namespace before)."""
        pod, path = self.topo.add_pod()
        before = self.pod_snapshot(pod)
        for conf, ifname in self.chains:
            result = ok(self.cni[release].add(conf, path, cid(pod), ifname), f"ADD {ifname} by {release}")
        return pod, pod_ips(result, self.ifname), before

    def check(self, release, pod):
        ok(self.cni[release].check(self.route_chain, pod, cid(pod), self.ifname), f"CHECK by {release}")

    def delete(self, release, pod):
        for conf, ifname in reversed(self.chains):
            ok(self.cni[release].delete(conf, pod, cid(pod), ifname), f"DEL {ifname} by {release}")

    def gc(self, release, valid):
        conf = {"cniVersion": "1.1.0", "name": NETWORK, "type": "route", "master": MASTER, "bridge": SHIM,
                "stateDir": str(self.state), **self.route_keys,
                "cni.dev/valid-attachments": [{"containerID": cid(pod), "ifname": self.ifname} for pod in valid]}
        proc = subprocess.run(netns.plugin_argv(self.topo.node, self.plugins[release], "GC"), input=json.dumps(conf),
                              capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout) == (0, ""), proc

    def person(self, release, *args):
        return subprocess.run(netns.person_argv(self.topo.node, self.plugins[release], *args), capture_output=True,
                              text=True, timeout=120)

    def pod_snapshot(self, pod):
        return namespace_snapshot(lambda argv: self.topo.pod_exec(pod, argv), links=False)

    def formats(self):
        """The "format" of every record on the node (None: the key is absent)."""
        return [json.loads(path.read_text()).get("format") for path in records(self.state)]

    def assert_clean(self):
        """No route, record or claim of route's left, nor its nft table (the shim stays, as after any DEL)."""
        assert our_routes(self.topo) == []
        assert records(self.state) == [] and claims(self.state) == []
        assert "cni_route" not in self.topo.node_exec(["nft", "list", "tables"]).stdout


def cid(pod):
    return "ctr-" + os.path.basename(pod)


@pytest.fixture(params=["route-via-host", "multus"])
def node(request, cni, topo, chain, tmp_path, route_plugin, previous_build):
    return Node(request.param, cni, topo, chain, tmp_path, route_plugin, previous_build)


def test_the_previous_release_is_built_from_its_commit(previous_build):
    version = subprocess.run(["env", "-i", f"PATH={netns.NODE_PATH}", str(previous_build), "--version"],
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
    node.gc("previous", valid=[collected])  # what the runtime still lists stays
    assert [path.stem for path in records(node.state)] == [f"{cid(collected)}@{node.ifname}"]
    node.gc("previous", valid=[])
    node.assert_clean()
