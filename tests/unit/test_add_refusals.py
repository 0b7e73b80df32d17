"""What ADD refuses before it changes anything, and CHECK and STATUS report: a pod IP that would cut the node
off (an address or a next hop of the node: code 107), a master with ipvlan children (code 105)."""
import pytest
from helpers import call, netconf, prev_result

NO_POD_ENV = {"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None}


@pytest.fixture
def conf(tmp_path):
    def make(*addresses, version="1.0.0", **keys):
        return netconf(tmp_path, prev_result(*addresses) if addresses else None, version=version, **keys)
    return make


@pytest.mark.parametrize("extra_route, pod_ip, words", [
    (dict(dst="default", gateway="192.168.0.1"), "192.168.0.1/16",
     "pod IP 192.168.0.1 is the gateway of the node's route default via 192.168.0.1 dev eno1"),
    (dict(dst="::/0", gateway="fd00::1"), "fd00::1/64", "pod IP fd00::1 is the gateway of the node's route default"),
    (dict(dst="10.9.0.0/16", dev=None, nexthops=[("192.168.0.2", "eno1"), ("192.168.0.3", "eno1")]), "192.168.0.3/16",
     "route 10.9.0.0/16 via 192.168.0.2 dev eno1 via 192.168.0.3 dev eno1"),
    (dict(dst="10.8.0.0/16", gateway="192.168.0.4", table="100"), "192.168.0.4/16", "dev eno1 table 100"),
    (dict(), "192.168.0.5/16", "pod IP 192.168.0.5 is an address of the node (on eno1)"),
    (dict(), "fd00::5/64", "pod IP fd00::5 is an address of the node (on eno1)"),
])
def test_a_pod_ip_that_would_cut_the_node_off_is_refused_and_nothing_changes(
        monkeypatch, host, conf, extra_route, pod_ip, words):
    if extra_route:
        host.add_route(extra_route.pop("dst"), extra_route.pop("dev", "eno1"), protocol="static", scope="global",
                       **extra_route)
    code, out, _ = call(monkeypatch, host, "ADD", conf(pod_ip))
    assert (code, out["code"]) == (1, 107) and words in out["msg"], out
    assert host.changes() == [] and "eno1.host" not in host.links


def test_an_address_on_another_device_is_refused_too(monkeypatch, host, conf):
    host.add_link("eth1", addresses=["10.20.0.5/24"])
    code, out, _ = call(monkeypatch, host, "ADD", conf("10.20.0.5/24"))
    assert out["code"] == 107 and "is an address of the node (on eth1)" in out["msg"]


def test_a_gateway_reached_through_the_shim_is_a_pod_and_no_collision(monkeypatch, host, conf):
    """A node route through a pod acting as a router (e.g. a VPN pod): a re-ADD of that pod must work."""
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    host.add_route("10.50.0.0/16", "eno1.host", protocol="static", scope="global", gateway="192.168.1.2")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0


def test_a_stale_copy_on_the_shim_is_no_collision(monkeypatch, host, conf):
    """An address the master gave up, still on the shim until the next ADD removes it, may go to a pod."""
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge", addresses=["192.168.0.9/16"])
    assert call(monkeypatch, host, "ADD", conf("192.168.0.9/16"))[0] == 0
    assert "192.168.0.9/16" not in host.addresses_of("eno1.host")


# --- a master with ipvlan children ---

def test_add_refuses_a_master_with_ipvlan_children_and_changes_nothing(monkeypatch, host, conf):
    host.add_link("ipvl0", kind="ipvlan", parent="eno1")
    host.add_link("ipvl1", kind="ipvlan", parent="eno2")
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert (code, out["code"]) == (1, 105)
    assert "master eno1 has ipvlan children (ipvl0)" in out["msg"] and "Device or resource busy" in out["msg"]
    assert host.changes() == []


def test_check_and_status_report_a_master_with_ipvlan_children(monkeypatch, host, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", version="1.1.0"))[0] == 0
    host.add_link("ipvl0", kind="ipvlan", parent="eno1")  # as if the shim were gone and ipvlan took the master
    code, out, _ = call(monkeypatch, host, "CHECK", conf("192.168.1.2/16", version="1.1.0"))
    assert out["code"] == 103 and "master eno1 has ipvlan children (ipvl0)" in out["msg"]
    code, out, _ = call(monkeypatch, host, "STATUS", conf(version="1.1.0"), **NO_POD_ENV)
    assert out["code"] == 50 and "master eno1 has ipvlan children (ipvl0)" in out["msg"]
