"""Node layouts against the fake ip: the node addresses the shim carries when the master has none of a family
(or as nodeAddresses chooses), and the on-link routes to them in the pod."""
import json

import pytest
from helpers import POD_NETNS, call, netconf, prev_result


@pytest.fixture
def bare(host):
    """eno1 without addresses; the node's 10.20.0.5/24 and fd20::5/64 on eth1, with both default routes."""
    host.links["eno1"]["addresses"] = []
    host.routes.clear()
    host.add_link("eth1", addresses=["10.20.0.5/24", "10.20.0.6/24", "fd20::5/64", "fe80::1/64"])
    host.add_route("default", "eth1", protocol="static", scope="global", gateway="10.20.0.1")
    host.add_route("::/0", "eth1", protocol="static", scope="global", gateway="fd20::1")
    return host


@pytest.fixture
def conf(tmp_path):
    def make(*addresses, version="1.0.0", **keys):
        return netconf(tmp_path, prev_result(*addresses) if addresses else None, version=version, **keys)
    return make


def pod_routes(pod):
    return sorted((r["dst"], r.get("gateway"), r["dev"], r["protocol"], r["scope"]) for r in pod.routes)


def record(tmp_path, owner="c1@eth0"):
    return json.loads((tmp_path / "networks" / "default" / "attachments" / f"{owner}.json").read_text())


# --- a master without an address ---

def test_the_shim_carries_the_addresses_of_the_default_routes_device_and_the_pod_reaches_them(
        monkeypatch, bare, pod, conf, tmp_path):
    code, out, err = call(monkeypatch, bare, "ADD", conf("192.168.1.2/16"))
    assert code == 0, (out, err)
    assert bare.addresses_of("eno1.host") == ["10.20.0.5/24", "10.20.0.6/24", "fd20::5/64"]  # not the link-local
    assert pod_routes(pod) == [("10.20.0.5/32", None, "eth0", "201", "link"),
                               ("10.20.0.6/32", None, "eth0", "201", "link")]
    assert out["routes"] == [{"dst": "10.20.0.5/32"}, {"dst": "10.20.0.6/32"}]  # the pod has no IPv6 address
    assert record(tmp_path)["onLink"] == ["10.20.0.5/32", "10.20.0.6/32"]
    assert call(monkeypatch, bare, "CHECK", conf("192.168.1.2/16"))[:2] == (0, None)
    assert call(monkeypatch, bare, "DEL", conf("192.168.1.2/16"))[:2] == (0, None)
    assert pod.routes == [] and bare.routes_on("eno1.host") == []


def test_a_cni_1_1_result_gives_the_on_link_routes_their_scope(monkeypatch, bare, pod, conf):
    code, out, _ = call(monkeypatch, bare, "ADD", conf("192.168.1.2/16", version="1.1.0"))
    assert out["routes"][0] == {"dst": "10.20.0.5/32", "scope": 253}


def test_del_without_prev_result_removes_the_on_link_routes_it_remembers(monkeypatch, bare, pod, conf):
    assert call(monkeypatch, bare, "ADD", conf("192.168.1.2/16"))[0] == 0
    bare.links["eth1"]["addresses"] = ["10.20.0.9/24"]  # the node's address changed meanwhile
    assert call(monkeypatch, bare, "DEL", conf())[:2] == (0, None)
    assert pod.routes == []


def test_check_reports_a_missing_on_link_route(monkeypatch, bare, pod, conf):
    assert call(monkeypatch, bare, "ADD", conf("192.168.1.2/16"))[0] == 0
    pod.routes.pop(0)
    code, out, _ = call(monkeypatch, bare, "CHECK", conf("192.168.1.2/16"))
    assert out["code"] == 103 and "no route to 10.20.0.5/32 dev eth0 in the pod" in out["msg"]


def test_a_node_address_inside_the_pods_subnet_needs_no_route(monkeypatch, bare, pod, conf):
    assert call(monkeypatch, bare, "ADD", conf("10.20.0.50/24"))[0] == 0
    assert pod.routes == [] and "10.20.0.5/24" in bare.addresses_of("eno1.host")


def test_route_via_host_uses_the_node_address_after_its_on_link_route(monkeypatch, bare, pod, conf):
    code, out, err = call(monkeypatch, bare, "ADD", conf("192.168.1.2/16", routeViaHost=["10.96.0.0/12"]))
    assert code == 0, (out, err)
    assert ("10.96.0.0/12", "10.20.0.5", "eth0", "201", "global") in pod_routes(pod)
    entered = [argv[2:] for argv in bare.calls if argv[0] == "nsenter" and "replace" in argv]
    assert entered.index(["ip", "route", "replace", "10.20.0.5/32", "dev", "eth0", "scope", "link", "proto", "201"]) \
        < entered.index(["ip", "route", "replace", "10.96.0.0/12", "via", "10.20.0.5", "dev", "eth0", "proto", "201"])
    assert call(monkeypatch, bare, "DEL", conf("192.168.1.2/16", routeViaHost=["10.96.0.0/12"]))[0] == 0
    assert pod.routes == [] and bare.nft is None


def test_dual_stack_with_a_master_that_has_only_ipv4(monkeypatch, host, conf, tmp_path):
    pod = host.pod(POD_NETNS, addresses=["192.168.1.2/16", "fd00::100/64"])
    host.links["eno1"]["addresses"] = ["192.168.0.5/16"]
    host.add_link("eth1", addresses=["fd20::5/64"])
    host.add_route("::/0", "eth1", protocol="static", scope="global", gateway="fd20::1")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", "fd00::100/64"))[0] == 0
    assert host.addresses_of("eno1.host") == ["192.168.0.5/16", "fd20::5/64"]
    assert pod_routes(pod) == [("fd20::5/128", None, "eth0", "201", "link")]


def test_the_master_keeping_its_addresses_changes_nothing(monkeypatch, host, pod, conf):
    host.add_link("eth1", addresses=["10.20.0.5/24", "fd20::5/64"])
    host.add_route("::/0", "eth1", protocol="static", scope="global", gateway="fd20::1")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.addresses_of("eno1.host") == ["192.168.0.5/16", "fd00::5/64"]
    assert not [argv for argv in host.calls if argv[0] == "nsenter" and "-json" not in argv]


@pytest.mark.parametrize("device", [dict(name="wg0", kind="wireguard"), dict(name="cali1234", kind="veth"),
                                    dict(name="vxlan.calico", kind="vxlan"), dict(name="other.host", kind="macvlan")])
def test_a_default_route_through_a_tunnel_or_another_cnis_device_is_not_taken(monkeypatch, host, pod, conf, device):
    host.links["eno1"]["addresses"] = []
    host.routes.clear()
    host.add_link(device["name"], kind=device["kind"], addresses=["10.30.0.5/24"])
    host.add_route("default", device["name"], protocol="static", scope="global", gateway="10.30.0.1")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.addresses_of("eno1.host") == [] and pod.routes == []


def test_a_multipath_default_route_counts(monkeypatch, host, pod, conf):
    host.links["eno1"]["addresses"] = []
    host.routes.clear()
    host.add_link("eth1", addresses=["10.20.0.5/24"])
    host.add_link("eth2", addresses=["10.30.0.5/24"])
    host.add_route("default", None, protocol="static", scope="global", nexthops=[("10.30.0.1", "eth2")])
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.addresses_of("eno1.host") == ["10.30.0.5/24"]


# --- nodeAddresses ---

@pytest.mark.parametrize("selectors, carried", [
    (["10.20.0.6/32"], ["10.20.0.6/24"]),  # restrict: one of the default route's device
    (["10.20.0.0/24", "fd20::/64"], ["10.20.0.5/24", "10.20.0.6/24", "fd20::5/64"]),
    ([], []),  # the old behaviour: only the master's
])
def test_node_addresses_chooses_what_the_shim_carries(monkeypatch, bare, pod, conf, selectors, carried):
    assert call(monkeypatch, bare, "ADD", conf("192.168.1.2/16", nodeAddresses=selectors))[0] == 0
    assert bare.addresses_of("eno1.host") == carried
    assert [r["dst"] for r in pod.routes] == [c.split("/")[0] + "/32" for c in carried if ":" not in c]


def test_node_addresses_adds_to_a_master_with_addresses_and_skips_foreign_devices(monkeypatch, host, pod, conf):
    host.add_link("eth1", addresses=["10.20.0.5/24"])
    host.add_link("kube-ipvs0", kind="dummy", addresses=["10.96.0.1/32"])
    host.add_link("cilium_host", kind="veth", addresses=["10.0.0.1/32"])
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge", addresses=["10.40.0.5/24"])
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16", nodeAddresses=["10.0.0.0/8"]))
    assert code == 0
    assert host.addresses_of("eno1.host") == ["10.20.0.5/24", "192.168.0.5/16", "fd00::5/64"]  # 10.40.0.5 was a copy
    assert pod_routes(pod) == [("10.20.0.5/32", None, "eth0", "201", "link")]


@pytest.mark.parametrize("selectors, field", [(["10.20.0.5/24"], "nodeAddresses[0]"),
                                              ("10.20.0.0/24", "nodeAddresses")])
def test_invalid_node_addresses_are_refused_naming_the_entry(monkeypatch, host, conf, selectors, field):
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16", nodeAddresses=selectors))
    assert out["code"] == 7 and field in out["msg"] and host.changes() == []


def test_a_record_of_an_older_version_without_on_link_routes_is_still_deleted(monkeypatch, host, conf, tmp_path):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    path = tmp_path / "networks" / "default" / "attachments" / "c1@eth0.json"
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "onLink"}
    path.write_text(json.dumps(older))
    assert call(monkeypatch, host, "DEL", conf())[:2] == (0, None)
    assert host.routes_on("eno1.host") == []
