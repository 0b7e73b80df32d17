"""Smoke tests for the test bed itself (no CNI plugin involved)."""

import os
import subprocess

from beds import netns, topology


def test_node_pings_lan_without_cni(topo):
    assert topo.node.startswith("rtt-") and topo.lan.startswith("rtt-")
    r = topo.node_exec(["ping", "-c", "1", "-W", "2", topology.LAN_V4])
    assert r.returncode == 0, r.stdout + r.stderr
    r = topo.node_exec(["ping", "-c", "1", "-W", "2", topology.LAN_V6])
    assert r.returncode == 0, r.stdout + r.stderr
    r = topo.lan_exec(["ping", "-c", "1", "-W", "2", topology.NODE_V4])
    assert r.returncode == 0, r.stdout + r.stderr


def test_pod_is_empty_and_everything_is_deleted():
    t = topology.Topology()
    try:
        pod, path = t.add_pod()
        assert pod.startswith("rtt-pod-")
        assert path == "/var/run/netns/" + pod and os.path.exists(path)
        r = t.pod_exec(pod, ["ip", "-o", "link", "show"])
        assert r.returncode == 0
        assert [line.split(":")[1].strip() for line in r.stdout.splitlines()] == ["lo"]
        made = t.namespaces()
        assert set(netns.existing(made)) == {t.node, t.lan, pod}
    finally:
        t.close()
    assert netns.existing(made) == []
    assert not any(os.path.exists(netns.netns_path(n)) for n in made)


def test_close_after_failure_inside_with():
    made = []
    try:
        with topology.Topology() as t:
            made = t.namespaces()
            t.add_pod()
            made = t.namespaces()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(made) == 3
    assert netns.existing(made) == []


def test_sweep_leftovers_removes_rtt_namespaces_only():
    name = netns.new_name("leak")
    netns.create_netns(name)
    assert name in netns.list_netns()
    # a narrow prefix, so a concurrently running session is not disturbed
    removed = netns.sweep_leftovers(prefix="rtt-leak-")
    assert name in removed
    assert name not in netns.list_netns()
    assert all(n.startswith("rtt-") for n in removed)


def test_sweep_leaves_namespaces_of_live_processes_alone():
    # pid 1 never exits: this stands for a concurrently running session (or the demo)
    live = "rtt-leak-1-" + netns.new_name("x")[-8:]
    assert netns.owner_pid(live) == 1
    netns.create_netns(live)
    try:
        assert live not in netns.sweep_leftovers(prefix="rtt-leak-")
        assert live in netns.list_netns()
    finally:
        netns.delete_netns(live)
    assert live not in netns.list_netns()


def test_cnidriver_builds_and_reports_errors_as_json(cnidriver, tmp_path):
    import json
    p = subprocess.run([cnidriver, "add", str(tmp_path / "missing.json"), "/nonexistent"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    err = json.loads(p.stdout)
    assert set(err) >= {"code", "msg", "details"}
    assert err["code"] == 0
