"""routeViaHost against the fake ip and nft: pod routes through the node, the node's masquerade rule."""
import pytest
from helpers import POD_NETNS, call, netconf, prev_result

from cniroute import nft

VIA = ["10.96.0.0/12", "169.254.20.10/32", "fd00:96::/112"]


@pytest.fixture
def conf(tmp_path):
    def make(*addresses, version="1.0.0", **keys):
        keys.setdefault("routeViaHost", VIA)
        return netconf(tmp_path, prev_result(*addresses, version=version) if addresses else None, version=version,
                       **keys)
    return make


def pod_routes(pod):
    return sorted((r["dst"], r.get("gateway"), r["dev"], r["protocol"]) for r in pod.routes)


def test_add_routes_the_cidrs_through_the_node_and_masquerades_on_the_node(monkeypatch, host, pod, conf):
    code, out, err = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert code == 0, (out, err)
    assert pod_routes(pod) == [("10.96.0.0/12", "192.168.0.5", "eth0", "201"),
                               ("169.254.20.10/32", "192.168.0.5", "eth0", "201"),
                               ("fd00:96::/112", "fd00::5", "eth0", "201")]
    assert list(host.nft["rules"].values()) == ["eno1.host ip", "eno1.host ip6"]
    assert out["routes"] == [{"dst": "10.96.0.0/12", "gw": "192.168.0.5"},
                             {"dst": "169.254.20.10/32", "gw": "192.168.0.5"},
                             {"dst": "fd00:96::/112", "gw": "fd00::5"}]


def test_result_routes_in_a_legacy_result_go_under_ip4_and_ip6(monkeypatch, host, pod, conf):
    c = conf(version="0.2.0")
    c["prevResult"] = {"cniVersion": "0.2.0", "ip4": {"ip": "192.168.1.2/16"}, "ip6": {"ip": "fd00::100/64"}}
    code, out, _ = call(monkeypatch, host, "ADD", c)
    assert code == 0
    assert out["ip4"]["routes"] == [{"dst": "10.96.0.0/12", "gw": "192.168.0.5"},
                                    {"dst": "169.254.20.10/32", "gw": "192.168.0.5"}]
    assert out["ip6"]["routes"] == [{"dst": "fd00:96::/112", "gw": "fd00::5"}]


def test_add_twice_keeps_one_rule_and_one_route_per_cidr(monkeypatch, host, pod, conf):
    for _ in range(2):
        assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert len(host.nft["rules"]) == 2 and len(pod.routes) == 3


def test_without_route_via_host_nothing_in_the_pod_or_nft_changes(monkeypatch, host, pod, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", routeViaHost=[]))[0] == 0
    assert host.nft is None and pod.routes == []
    assert not [argv for argv in host.calls if argv[0] in ("nsenter", "nft") and "-json" not in argv]


@pytest.mark.parametrize("key, family", [("net/ipv4/ip_forward", "IPv4"), ("net/ipv6/conf/all/forwarding", "IPv6")])
def test_forwarding_off_is_reported_and_nothing_is_done_in_the_pod(monkeypatch, host, pod, conf, key, family):
    host.sysctls[key] = "0"
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert out["code"] == 105 and f"{family} forwarding" in out["msg"] and "never switches" in out["details"]
    assert host.sysctls[key] == "0" and pod.routes == [] and host.nft is None


def test_a_family_the_master_has_no_address_of_is_refused(monkeypatch, host, pod, conf):
    host.links["eno1"]["addresses"] = ["192.168.0.5/16"]
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert out["code"] == 105 and "no IPv6 address" in out["msg"]


@pytest.mark.parametrize("cidrs, field", [(["10.96.0.1/12"], "routeViaHost[0]"),
                                          (["10.96.0.0/12", "x/8"], "routeViaHost[1]"),
                                          ("10.96.0.0/12", "routeViaHost")])
def test_invalid_cidrs_are_refused_naming_the_entry(monkeypatch, host, pod, conf, cidrs, field):
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16", routeViaHost=cidrs))
    assert out["code"] == 7 and field in out["msg"] and host.changes() == []


def test_del_removes_pod_routes_and_the_rule_with_the_last_pod(monkeypatch, host, pod, conf):
    other = host.pod("/var/run/netns/pod2", addresses=["192.168.1.3/16"])
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert call(monkeypatch, host, "ADD", conf("192.168.1.3/16"), CNI_CONTAINERID="c2",
                CNI_NETNS="/var/run/netns/pod2")[0] == 0
    assert call(monkeypatch, host, "DEL", conf("192.168.1.2/16"))[0] == 0
    assert pod.routes == [] and len(other.routes) == 3
    assert list(host.nft["rules"].values()) == ["eno1.host ip", "eno1.host ip6"]  # pod2 still needs them
    assert call(monkeypatch, host, "DEL", conf("192.168.1.3/16"), CNI_CONTAINERID="c2",
                CNI_NETNS="/var/run/netns/pod2")[0] == 0
    assert other.routes == [] and host.nft is None


def test_del_when_the_pod_namespace_is_gone_says_nothing(monkeypatch, host, pod, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    del host.pods[POD_NETNS]
    code, out, err = call(monkeypatch, host, "DEL", conf("192.168.1.2/16"))
    assert (code, out) == (0, None) and "error" not in err and host.nft is None


def test_gc_removes_the_node_side_but_never_enters_a_remembered_netns(monkeypatch, host, pod, conf, tmp_path):
    """A stale attachment's namespace path (e.g. /proc/PID/ns/net) may be another pod's by now: GC leaves the
    pod side alone (a dead pod took its routes along) and cleans the node side."""
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", version="1.1.0"))[0] == 0
    gc = netconf(tmp_path, version="1.1.0", **{"cni.dev/valid-attachments": []})
    assert call(monkeypatch, host, "GC", gc, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)[0] == 0
    assert host.nft is None and host.routes_on("eno1.host") == []
    assert not [argv for argv in host.calls if argv[0] == "nsenter" and "del" in argv]


@pytest.mark.parametrize("damage, words", [
    (lambda h, p: p.routes.pop(0), "no route to 10.96.0.0/12 via 192.168.0.5 dev eth0 in the pod"),
    (lambda h, p: h.nft["rules"].clear(), "no masquerade rule for eno1.host"),
    (lambda h, p: h.sysctls.update({"net/ipv4/ip_forward": "0"}), "IPv4 forwarding"),
])
def test_check_verifies_pod_routes_rule_and_forwarding(monkeypatch, host, pod, conf, damage, words):
    c = conf("192.168.1.2/16")
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    assert call(monkeypatch, host, "CHECK", c)[0] == 0
    damage(host, pod)
    code, out, _ = call(monkeypatch, host, "CHECK", c)
    assert out["code"] == 103 and words in out["msg"]


def test_status_reports_forwarding_off(monkeypatch, host, conf):
    host.sysctls["net/ipv4/ip_forward"] = "0"
    code, out, _ = call(monkeypatch, host, "STATUS", conf(version="1.1.0"), CNI_CONTAINERID=None, CNI_NETNS=None,
                        CNI_IFNAME=None)
    assert out["code"] == 50 and "IPv4 forwarding" in out["msg"]


def test_a_default_route_via_the_host_can_be_deleted(monkeypatch, host, pod, conf):
    """ip prints a /0 as "default"; DEL must still recognise its own route."""
    c = conf("192.168.1.2/16", routeViaHost=["0.0.0.0/0"])
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    assert call(monkeypatch, host, "CHECK", c)[0] == 0
    assert call(monkeypatch, host, "DEL", c)[:2] == (0, None)
    assert pod.routes == [] and host.nft is None


def test_a_shim_named_like_the_nft_lock_does_not_deadlock(monkeypatch, host, pod, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", bridge="nft"))[0] == 0
    assert list(host.nft["rules"].values()) == ["nft ip", "nft ip6"]


def test_a_del_that_dies_before_forgetting_is_finished_by_the_next(monkeypatch, host, pod, conf):
    """The rule goes before the record: if removing the rule fails (or the call is killed), the record
    stays, and the next DEL removes the rule."""
    c = conf("192.168.1.2/16")
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    original = host._nft
    monkeypatch.setattr(host, "_nft", lambda w: (1, "", "Error: busy\n") if w[:1] == ["delete"] else original(w))
    assert call(monkeypatch, host, "DEL", c)[0] == 1
    monkeypatch.setattr(host, "_nft", original)
    assert call(monkeypatch, host, "DEL", c)[:2] == (0, None)
    assert host.nft is None


def test_the_rule_compares_the_original_destination_with_the_reply_source():
    """Not conntrack's DNAT status bit, which IPVS never sets."""
    rule = " ".join(nft.add_masquerade("eno1.host", "ip"))
    assert "ct status" not in rule
    assert ("add @equal4 { ct reply ip saddr . ct reply ip saddr } "
            "ct original ip daddr . ct reply ip saddr != @equal4 masquerade") in rule


def test_an_older_versions_rule_is_replaced_by_the_next_add(monkeypatch, host, pod, conf):
    host.nft = {"chain": True, "rules": {2: "eno1.host"}, "sets": set(), "next": 3}  # iifname ... ct status dnat
    c = conf("192.168.1.2/16", routeViaHost=["10.96.0.0/12"])
    code, out, _ = call(monkeypatch, host, "CHECK", c)
    assert out["code"] == 103 and "no masquerade rule for eno1.host" in out["msg"]
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    assert sorted(host.nft["rules"].values()) == ["eno1.host ip", "eno1.host ip6"]
    assert call(monkeypatch, host, "CHECK", c)[:2] == (0, None)
