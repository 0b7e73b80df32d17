"""Golden logs: the exact ip commands (and the replayable log around them) each verb produces.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/ after an intended change, then review the diff.
"""
import os

import pytest
from helpers import call, multus_pod, netconf, prev_result, run_person

from cniroute.journal import BLOCK_START, without_variables

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden")


def scenario_add_new_shim(monkeypatch, host, state):
    return call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16", "fd00::100/64")))


def scenario_add_existing_shim(monkeypatch, host, state):
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge")
    return call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")))


def scenario_add_second_pod(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")), CNI_CONTAINERID="first")
    return call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.3/16")))


def scenario_add_route_via_host(monkeypatch, host, state):
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    conf = netconf(state, prev_result("192.168.1.2/16"), routeViaHost=["10.96.0.0/12", "fd00:96::/112"])
    return call(monkeypatch, host, "ADD", conf)


def scenario_del_route_via_host(monkeypatch, host, state):
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    conf = netconf(state, prev_result("192.168.1.2/16"), routeViaHost=["10.96.0.0/12"])
    call(monkeypatch, host, "ADD", conf)
    return call(monkeypatch, host, "DEL", conf)


def scenario_add_foreign_device(monkeypatch, host, state):
    host.add_link("eno1.host", kind="veth", parent="peer0")
    return call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")))


def scenario_del(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16", "fd00::100/64")))
    return call(monkeypatch, host, "DEL", netconf(state, prev_result("192.168.1.2/16", "fd00::100/64")))


def scenario_del_without_prev_result(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")))
    return call(monkeypatch, host, "DEL", netconf(state), CNI_NETNS=None)


def scenario_check(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16", "fd00::100/64")))
    return call(monkeypatch, host, "CHECK", netconf(state, prev_result("192.168.1.2/16", "fd00::100/64")))


def scenario_check_broken(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")))
    host.routes = [r for r in host.routes if r["dev"] != "eno1.host"]
    host.links["eno1.host"]["up"] = False
    return call(monkeypatch, host, "CHECK", netconf(state, prev_result("192.168.1.2/16")))


def scenario_reconcile_after_shim_deleted(monkeypatch, host, state):
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.2/16")), CNI_CONTAINERID="a")
    call(monkeypatch, host, "ADD", netconf(state, prev_result("192.168.1.3/16", "fd00::100/64")), CNI_CONTAINERID="b")
    host.delete_link("eno1.host")
    return run_person(host, "reconcile", "--state-dir", state)


def scenario_add_multus(monkeypatch, host, state):
    multus_pod(host, ipv6=True)
    conf = netconf(state, prev_result("192.168.1.2/16", "fd00::100/64", ifname="net1"))
    return call(monkeypatch, host, "ADD", conf, CNI_IFNAME="net1")


def scenario_del_multus(monkeypatch, host, state):
    multus_pod(host, ipv6=True)
    conf = netconf(state, prev_result("192.168.1.2/16", "fd00::100/64", ifname="net1"))
    call(monkeypatch, host, "ADD", conf, CNI_IFNAME="net1")
    return call(monkeypatch, host, "DEL", conf, CNI_IFNAME="net1")


SCENARIOS = {name[len("scenario_"):]: f for name, f in globals().items() if name.startswith("scenario_")}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_log(monkeypatch, host, tmp_path, name):
    _, _, log = SCENARIOS[name](monkeypatch, host, tmp_path)
    last_block = without_variables(log[log.rindex(BLOCK_START):])
    path = os.path.join(GOLDEN, name.replace("_", "-") + ".log")
    if os.environ.get("UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(last_block)
    with open(path) as f:
        assert last_block == f.read()
