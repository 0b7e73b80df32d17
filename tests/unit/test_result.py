"""prevResult conversion between spec versions, as libcni's converters do it."""
import pytest

from cniroute import result

V1 = {"cniVersion": "1.0.0",
      "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}],
      "ips": [{"interface": 0, "address": "192.168.1.2/16", "gateway": "192.168.0.1"},
              {"interface": 0, "address": "192.168.1.3/16"},
              {"interface": 0, "address": "fd00::100/64", "gateway": "fd00::1"}],
      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
      "dns": {"nameservers": ["192.168.0.1"]}}


def test_same_shape_passes_through_untouched_apart_from_version():
    doc = {**V1, "custom": {"kept": True}}
    assert result.render(result.parse(doc, "1.0.0"), "1.1.0") == {**doc, "cniVersion": "1.1.0"}


def test_down_to_0_4_0_adds_ip_versions():
    out = result.render(result.parse(V1, "1.0.0"), "0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "4", "6"]
    assert out["interfaces"] == V1["interfaces"] and out["routes"] == V1["routes"]


def test_up_from_0_4_0_drops_ip_versions():
    old = result.render(result.parse(V1, "1.0.0"), "0.3.1")
    assert result.render(result.parse(old, "0.3.1"), "1.0.0") == V1


def test_down_to_0_2_0_keeps_first_address_per_family_and_splits_routes():
    out = result.render(result.parse(V1, "1.0.0"), "0.2.0")
    assert out == {"cniVersion": "0.2.0",
                   "ip4": {"ip": "192.168.1.2/16", "gateway": "192.168.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                   "ip6": {"ip": "fd00::100/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                   "dns": {"nameservers": ["192.168.0.1"]}}


def test_legacy_result_routes_all_its_addresses():
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/24"}, "ip6": {"ip": "fd00::5/64"}}
    assert result.pod_prefixes(result.parse(legacy, "0.2.0"), "eth0") == ["10.1.0.5/32", "fd00::5/128"]
    up = result.render(result.parse(legacy, "0.2.0"), "1.0.0")
    assert up == {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}],
                  "routes": []}


def test_prev_result_without_version_takes_the_configs():
    doc = {k: v for k, v in V1.items() if k != "cniVersion"}
    assert result.parse(doc, "1.0.0")["cniVersion"] == "1.0.0"


def test_pod_prefixes_are_deduplicated_host_prefixes_of_the_pod_interface():
    doc = {**V1, "ips": V1["ips"] + [{"interface": 0, "address": "192.168.1.2/24"}]}
    assert result.pod_prefixes(result.parse(doc, "1.0.0"), "eth0") == [
        "192.168.1.2/32", "192.168.1.3/32", "fd00::100/128"]
    assert result.pod_prefixes(result.parse(doc, "1.0.0"), "net1") == []


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_ips_without_interface_index_belong_to_the_pod(version):
    doc = result.render(result.parse({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}]}, "1.0.0"), version)
    assert result.pod_prefixes(result.parse(doc, version), "eth0") == ["10.0.0.2/32"]
