"""The pod side heals, for real: on a node whose master has no address (README, "A master without an address"),
a running pod reaches the node's new address after the node's address changes, and the node's probe from that
address reaches the pod, once `route reconcile --watch` has repaired: within the watcher's repair time (the
same generous bound as tests/e2e/test_self_healing.py; --interval 60, so the repair comes from its ip monitor).
Without the watcher the pod keeps its route to the old address, and the probe fails: the bed is not vacuous."""
import json
import os
import time
from pathlib import Path

import pytest

from beds import watch
from beds.libcni import add_pod, pod_ips
from beds.services import request
from beds.topology import ELSEWHERE_V4, PROTO, SECOND_NIC, move_node_address, node_sysctl

REPAIR_BOUND = 10.0  # seconds, as test_self_healing.py's
NEW_ADDRESS = "10.20.0.7"


def pod_routes(topo, pod):
    return {(r["dst"], r.get("gateway")) for r in json.loads(topo.pod_exec(pod, ["ip", "-json", "route"]).stdout)
            if r.get("protocol") == PROTO}


def renew(topo):
    """A DHCP renewal that gives the node another address on its NIC (the default route stays)."""
    for argv in (["sysctl", "-qw", f"net.ipv4.conf.{SECOND_NIC}.promote_secondaries=1"],
                 ["ip", "addr", "add", f"{NEW_ADDRESS}/24", "dev", SECOND_NIC],
                 ["ip", "addr", "del", f"{ELSEWHERE_V4}/24", "dev", SECOND_NIC]):
        topo.node_exec(argv, check=True)


@pytest.fixture
def bed(cni, topo, chain, servers, cni_path, tmp_path):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)  # routeViaHost needs it
    move_node_address(topo, families=(4,))
    conf = chain(routeViaHost=["10.96.0.0/12"])
    pod, result = add_pod(cni, conf)
    (ip,) = pod_ips(result)
    servers(pod, ip, 8080)  # what the kubelet probes
    assert request(topo.node, ip, 8080) == f"echo hello from {ELSEWHERE_V4}"
    assert pod_routes(topo, pod) == {(ELSEWHERE_V4, None), ("10.96.0.0/12", ELSEWHERE_V4)}
    return pod, ip, os.path.join(cni_path, "route"), tmp_path / "route-state"


def test_a_running_pod_reaches_the_nodes_new_address_and_the_probe_works_after_the_watcher_repairs(cni, topo, bed,
                                                                                                   tmp_path):
    pod, ip, route, state_dir = bed
    with watch.Watcher(topo.node, route, state_dir, "--interval", "60", stderr_path=tmp_path / "w.err") as watcher:
        assert watcher.wait_for("watching"), watcher.output()
        renew(topo)
        started = time.monotonic()
        wanted = {(NEW_ADDRESS, None), ("10.96.0.0/12", NEW_ADDRESS)}
        while pod_routes(topo, pod) != wanted and time.monotonic() - started < REPAIR_BOUND:
            time.sleep(0.02)
        seconds = time.monotonic() - started
        assert pod_routes(topo, pod) == wanted, watcher.output()
        print(f"pod side repaired {seconds:.3f} s after the address changed")
        assert request(topo.node, ip, 8080) == f"echo hello from {NEW_ADDRESS}"  # the shim's address is the new one
        assert request(topo.node, ip, 8080, source=NEW_ADDRESS) == f"echo hello from {NEW_ADDRESS}"  # the probe
        assert cni.ping_from_pod(pod, NEW_ADDRESS), "pod -> the node's new address"
        assert watcher.stop()[0] == 0, watcher.output()


def test_without_the_watcher_the_pod_keeps_the_old_address_and_the_probe_fails(cni, topo, bed):
    pod, ip, _, _ = bed
    renew(topo)
    time.sleep(1.0)
    assert pod_routes(topo, pod) == {(ELSEWHERE_V4, None), ("10.96.0.0/12", ELSEWHERE_V4)}
    assert request(topo.node, ip, 8080, source=NEW_ADDRESS) is None  # the probe from the node's address now
    assert not cni.ping_from_pod(pod, NEW_ADDRESS)


def counts(pid):
    """(threads, open descriptors, resident KiB) of a process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["Threads"]), len(os.listdir(f"/proc/{pid}/fd")), int(status["VmRSS"].split()[0])


def test_restarts_of_ip_monitor_and_repairs_leave_no_thread_or_descriptor_behind(topo, bed, tmp_path):
    """The watcher of a node that runs for weeks: its ip monitor killed again and again, each time with a repair
    to make. Its threads and descriptors are counted before and after."""
    pod, ip, route, state_dir = bed
    with watch.Watcher(topo.node, route, state_dir, "--interval", "60", stderr_path=tmp_path / "w.err") as watcher:
        assert watcher.wait_for("watching"), watcher.output()

        def cycle():
            [monitor] = watcher.monitor_pids()
            topo.node_exec(["ip", "route", "flush", "proto", PROTO], check=True)  # a repair to make
            os.kill(monitor, 9)
            started = time.monotonic()
            while time.monotonic() - started < REPAIR_BOUND and (watcher.monitor_pids() in ([], [monitor]) or
                                                                 not routed()):
                time.sleep(0.05)
            assert watcher.monitor_pids() not in ([], [monitor]), watcher.output()
            assert routed(), watcher.output()

        def routed():
            found = json.loads(topo.node_exec(["ip", "-json", "route", "show", "proto", PROTO]).stdout)
            return [r["dst"] for r in found] == [ip]

        for _ in range(3):  # warm up
            cycle()
        time.sleep(1.0)
        before = counts(watcher.pid)
        for _ in range(15):
            cycle()
        time.sleep(1.0)
        after = counts(watcher.pid)
        for _ in range(15):
            cycle()
        time.sleep(1.0)
        last = counts(watcher.pid)
        print(f"threads, descriptors, RSS KiB: {before} -> {after} -> {last}")
        assert after[:2] == before[:2], (before, after, watcher.output()[-2000:])
        # Memory: without the cyclic collector (off in the launchers) each cycle kept ~0.5 MiB of sh's objects.
        assert last[2] - after[2] < 2048, (before, after, last)
        assert watcher.output().count("ip monitor ended") == 33
        assert watcher.stop()[0] == 0, watcher.output()


def test_a_pass_that_may_not_enter_the_pod_names_it_with_the_reason_and_is_not_in_shape(cni, topo, bed):
    """The watcher's capabilities without CAP_SYS_ADMIN (the DaemonSet's before it had it): nsenter is refused,
    and the pass says so for the pod instead of reading the refusal as an empty pod and saying "in shape"."""
    pod, _, route, state_dir = bed
    renew(topo)
    proc = topo.node_exec(["setpriv", "--bounding-set=-sys_admin", route, "reconcile", "--state-dir", str(state_dir),
                           "--log-file", "/dev/null"])
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("route reconcile: eno1.host:")]
    assert proc.returncode == 1 and "NOT in shape" in line, proc.stderr
    [record] = (state_dir / "networks").glob("*/attachments/*.json")
    owner = json.loads(record.read_text())
    assert line.count(f"pod {owner['containerID']}@{owner['ifname']}: cannot enter its network namespace "
                      f"{owner['netns']}: nsenter: ") == 1, line
    assert "Operation not permitted" in line, line
    assert pod_routes(topo, pod) == {(ELSEWHERE_V4, None), ("10.96.0.0/12", ELSEWHERE_V4)}  # untouched
