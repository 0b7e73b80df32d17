"""ADD, DEL and CHECK against the fake ip: what they change on the host, and what they refuse."""
import fcntl
import json

import pytest
from helpers import call, netconf, prev_result

from cniroute import iproute, shim, store

PROTO = iproute.ROUTE_PROTO


@pytest.fixture
def conf(tmp_path):
    def make(*addresses, **keys):
        return netconf(tmp_path, prev_result(*addresses) if addresses else None, **keys)
    return make


def test_add_creates_up_shim_and_route_and_passes_prev_result_through(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    code, out, _ = call(monkeypatch, host, "ADD", c)
    assert code == 0
    assert out == c["prevResult"]
    shim = host.links["eno1.host"]
    assert (shim["kind"], shim["mode"], shim["parent"], shim["up"]) == ("macvlan", "bridge", "eno1", True)
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
    assert [r for r in host.routes if r["dev"] == "eno1.host"][0]["protocol"] == PROTO


def test_add_is_idempotent(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    before = len(host.changes())
    code, _, _ = call(monkeypatch, host, "ADD", c)
    assert code == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
    # the second ADD only re-asserts the route: no link add, no link set
    assert [a[1:3] for a in host.changes()[before:]] == [["route", "replace"]]


def test_add_takes_over_a_stale_route_to_the_same_ip(monkeypatch, host, conf):
    host.add_link("old0")
    host.add_route("192.168.1.2/32", "old0", protocol="boot")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.routes_on("old0") == []
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]


def test_add_routes_every_ip_of_the_pod_interface_v4_and_v6(monkeypatch, host, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", "192.168.1.3/16", "fd00::100/64"))[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32", "192.168.1.3/32", "fd00::100/128"]


def test_add_ignores_ips_of_other_and_host_side_interfaces(monkeypatch, host, tmp_path):
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "veth1", "mac": "02:00:00:00:00:09"},  # host side: no sandbox
                           {"name": "eth0", "sandbox": "/var/run/netns/pod1"},
                           {"name": "net1", "sandbox": "/var/run/netns/pod1"}],
            "ips": [{"interface": 0, "address": "10.0.0.1/24"}, {"interface": 1, "address": "192.168.1.2/16"},
                    {"interface": 2, "address": "10.9.0.2/24"}]}
    assert call(monkeypatch, host, "ADD", netconf(tmp_path, prev))[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]


def test_add_without_prev_result_is_code_7(monkeypatch, host, conf):
    code, out, _ = call(monkeypatch, host, "ADD", conf())
    assert (code, out["code"]) == (1, 7)
    assert "chained" in out["msg"]
    assert host.calls == []


@pytest.mark.parametrize("kind, parent, mode, why", [
    ("veth", "peer0", None, "veth device"),
    ("macvlan", "eno1", "private", "private mode"),
    ("macvlan", "eno2", "bridge", "on eno2"),
    (None, None, None, "plain device"),
])
def test_add_refuses_a_foreign_device_with_the_shims_name(monkeypatch, host, conf, kind, parent, mode, why):
    host.add_link("eno2")
    host.add_link("eno1.host", kind=kind, parent=parent, mode=mode, up=False, mtu=9000)
    before = dict(host.links["eno1.host"])
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert (code, out["code"]) == (1, 102)
    assert why in out["msg"] and "eno1.host" in out["msg"]
    assert host.links["eno1.host"] == before
    assert host.changes() == []


def test_add_brings_a_down_shim_up_and_follows_the_masters_mtu(monkeypatch, host, conf):
    host.links["eno1"]["mtu"] = 9000
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge", up=False, mtu=1500)
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.links["eno1.host"]["up"] and host.links["eno1.host"]["mtu"] == 9000


def test_add_with_missing_master_names_it(monkeypatch, host, conf):
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16", master="eno9"))
    assert out["code"] == 104 and "eno9" in out["msg"]
    assert host.changes() == []


def test_master_defaults_to_the_default_route_device(monkeypatch, host, tmp_path):
    c = netconf(tmp_path, prev_result("192.168.1.2/16"))
    del c["master"]
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    assert host.links["eno1.host"]["parent"] == "eno1"


def test_no_master_and_no_default_route_is_an_invalid_config(monkeypatch, host, tmp_path):
    host.routes.clear()
    c = netconf(tmp_path, prev_result("192.168.1.2/16"))
    del c["master"]
    code, out, _ = call(monkeypatch, host, "ADD", c)
    assert out["code"] == 7 and "master" in out["msg"]


def test_long_master_gets_a_short_stable_shim_name(monkeypatch, host, conf):
    host.add_link("enp0s31f6abcd")
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16", master="enp0s31f6abcd"))[0] == 0
    shims = [n for n, link in host.links.items() if link["kind"] == "macvlan"]
    assert len(shims) == 1 and len(shims[0]) <= 15 and shims[0].startswith("enp0s31f6.")


def test_ip_failure_is_a_plugin_code_with_command_and_stderr(monkeypatch, host, conf):
    host.failures[("route", "replace")] = (2, "RTNETLINK answers: Operation not permitted\n")
    code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert code == 1 and out["code"] >= 100
    assert "ip route replace 192.168.1.2/32 dev eno1.host" in out["msg"]
    assert "Operation not permitted" in out["details"]


def test_del_removes_only_this_pods_routes(monkeypatch, host, tmp_path):
    a, b = netconf(tmp_path, prev_result("192.168.1.2/16")), netconf(tmp_path, prev_result("192.168.1.3/16"))
    assert call(monkeypatch, host, "ADD", a, CNI_CONTAINERID="a")[0] == 0
    assert call(monkeypatch, host, "ADD", b, CNI_CONTAINERID="b")[0] == 0
    assert call(monkeypatch, host, "DEL", a, CNI_CONTAINERID="a")[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.3/32"]
    assert "eno1.host" in host.links


def test_del_twice_succeeds(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    call(monkeypatch, host, "ADD", c)
    assert call(monkeypatch, host, "DEL", c)[:2] == (0, None)
    assert call(monkeypatch, host, "DEL", c)[:2] == (0, None)
    assert host.routes_on("eno1.host") == []


def test_del_without_prev_result_uses_saved_state(monkeypatch, host, conf):
    call(monkeypatch, host, "ADD", conf("192.168.1.2/16", "fd00::100/64"))
    code, out, _ = call(monkeypatch, host, "DEL", conf(), CNI_NETNS=None)
    assert (code, out) == (0, None)
    assert host.routes_on("eno1.host") == []


def test_del_with_nothing_known_succeeds_without_changes(monkeypatch, host, conf):
    assert call(monkeypatch, host, "DEL", conf(), CNI_NETNS=None)[:2] == (0, None)
    assert host.changes() == []


def test_del_when_shim_and_master_are_gone_succeeds(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    call(monkeypatch, host, "ADD", c)
    host.links.clear()
    host.routes.clear()
    assert call(monkeypatch, host, "DEL", c)[:2] == (0, None)


def test_del_leaves_a_foreign_route_to_the_same_ip(monkeypatch, host, conf):
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge")
    host.add_route("192.168.1.2/32", "eno1.host", protocol="static")
    assert call(monkeypatch, host, "DEL", conf("192.168.1.2/16"))[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]


def test_check_passes_on_a_healthy_pod(monkeypatch, host, conf):
    c = conf("192.168.1.2/16", "fd00::100/64")
    call(monkeypatch, host, "ADD", c)
    assert call(monkeypatch, host, "CHECK", c)[:2] == (0, None)


@pytest.mark.parametrize("damage, words", [
    (lambda h: h.routes.clear(), "no route to 192.168.1.2/32 on eno1.host"),
    (lambda h: h.links["eno1.host"].update(up=False), "down"),
    (lambda h: h.links["eno1.host"].update(mode="vepa"), "vepa mode"),
    (lambda h: h.links.pop("eno1.host"), "does not exist"),
    (lambda h: [r.update(scope="global") for r in h.routes], "not scope link"),
    (lambda h: [r.update(dev="eno1") for r in h.routes if r["dst"] != "default"], "goes via eno1"),
])
def test_check_catches_damage(monkeypatch, host, conf, damage, words):
    c = conf("192.168.1.2/16")
    call(monkeypatch, host, "ADD", c)
    damage(host)
    code, out, _ = call(monkeypatch, host, "CHECK", c)
    assert (code, out["code"]) == (1, 103)
    assert words in out["msg"]


def test_check_needs_prev_result(monkeypatch, host, conf):
    code, out, _ = call(monkeypatch, host, "CHECK", conf())
    assert out["code"] == 7


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_result_is_printed_in_the_configs_version(monkeypatch, host, tmp_path, version):
    c = netconf(tmp_path, prev_result("192.168.1.2/16", version="1.0.0"), version=version)
    code, out, _ = call(monkeypatch, host, "ADD", c)
    assert code == 0 and out["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert out["ip4"]["ip"] == "192.168.1.2/16"
    else:
        assert out["ips"][0]["address"] == "192.168.1.2/16"
        assert ("version" in out["ips"][0]) == version.startswith("0.")
    assert json.dumps(out)  # serialisable


def test_add_gives_the_shim_the_masters_global_addresses_and_sysctls(monkeypatch, host, conf):
    host.links["eno1"]["addresses"].append("fe80::1/64")  # link-local: per link, never copied
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    assert host.addresses_of("eno1.host") == ["192.168.0.5/16", "fd00::5/64"]
    assert host.sysctls["net/ipv4/conf/eno1.host/arp_filter"] == "1"
    assert host.sysctls["net/ipv6/conf/eno1.host/accept_ra"] == "0"


def test_add_follows_the_masters_addresses_when_they_change(monkeypatch, host, conf):
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0
    host.links["eno1"]["addresses"] = ["10.1.0.5/24", "fd00::5/64"]
    assert call(monkeypatch, host, "ADD", conf("192.168.1.3/16"), CNI_CONTAINERID="c2")[0] == 0
    assert host.addresses_of("eno1.host") == ["10.1.0.5/24", "fd00::5/64"]


def test_add_with_ipv6_disabled_skips_the_ipv6_sysctl(monkeypatch, host, conf):
    del host.sysctls["net/ipv6/conf/eno1/accept_ra"]
    host.add_link("eno1.host", kind="macvlan", parent="eno1", mode="bridge")
    del host.sysctls["net/ipv6/conf/eno1.host/accept_ra"]
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0


def test_del_leaves_the_shims_addresses_alone(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    call(monkeypatch, host, "ADD", c)
    before = host.addresses_of("eno1.host")
    assert call(monkeypatch, host, "DEL", c)[0] == 0
    assert host.addresses_of("eno1.host") == before and host.links["eno1.host"]["up"]


@pytest.mark.parametrize("damage, words", [
    (lambda h: h.links["eno1.host"]["addresses"].remove("fd00::5/64"), "lacks the node address fd00::5/64"),
    (lambda h: h.links["eno1"]["addresses"].append("192.168.0.6/16"), "lacks the node address 192.168.0.6/16"),
    (lambda h: h.links["eno1.host"]["addresses"].append("10.0.0.1/8"), "has 10.0.0.1/8, which is not a node"),
    (lambda h: h.sysctls.update({"net/ipv4/conf/eno1.host/arp_filter": "0"}), "arp_filter is 0, not 1"),
    (lambda h: h.links["eno1.host"].update(mtu=1400), "MTU 1400, master 1500"),
])
def test_check_catches_a_shim_out_of_step_with_the_master(monkeypatch, host, conf, damage, words):
    c = conf("192.168.1.2/16")
    call(monkeypatch, host, "ADD", c)
    damage(host)
    code, out, _ = call(monkeypatch, host, "CHECK", c)
    assert out["code"] == 103 and words in out["msg"]


def test_an_interface_index_written_as_a_float_still_selects_the_interface(monkeypatch, host, conf):
    c = conf("192.168.1.2/16")
    c["prevResult"]["ips"][0]["interface"] = 0.0  # valid JSON Schema integer
    assert call(monkeypatch, host, "ADD", c)[0] == 0
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]


def test_a_busy_shim_lock_gives_try_again_later(monkeypatch, host, conf, tmp_path):
    monkeypatch.setattr(store, "LOCK_TIMEOUT", 0.2)
    (tmp_path / "locks").mkdir()
    with open(tmp_path / "locks" / "shim.eno1.host", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another call is changing this shim
        code, out, _ = call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))
    assert (code, out["code"]) == (1, 11) and "busy" in out["msg"]
    assert host.changes() == []
    assert call(monkeypatch, host, "ADD", conf("192.168.1.2/16"))[0] == 0  # released: works again


def add(monkeypatch, host, state_dir, container, *addresses, **keys):
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result(*addresses), **keys),
                          CNI_CONTAINERID=container)
    assert code == 0, (out, err)


def test_the_shims_mac_is_stable_local_and_unicast():
    mac = shim.stable_mac("52:54:00:12:34:56", "eno1.host")
    assert mac == shim.stable_mac("52:54:00:12:34:56", "eno1.host") == shim.stable_mac("52:54:00:12:34:56".upper(),
                                                                                        "eno1.host")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert len({mac, shim.stable_mac("52:54:00:12:34:57", "eno1.host"),
                shim.stable_mac("52:54:00:12:34:56", "eno1.pods")}) == 3
    assert shim.stable_mac(None, "eno1.host") is None


def test_the_shims_mac_comes_from_the_masters_permanent_mac(monkeypatch, host, tmp_path):
    host.links["eno1"]["permanent_mac"] = "52:54:00:12:34:56"  # the MAC in use was changed (a bond, a VM)
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    assert host.links["eno1.host"]["mac"] == shim.stable_mac("52:54:00:12:34:56", "eno1.host")


def test_add_puts_the_new_address_copy_on_before_the_old_goes(monkeypatch, host, tmp_path):
    """A shim without an IPv4 address loses every IPv4 route through it: the other pods' too."""
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.links["eno1"]["addresses"] = ["192.168.0.6/16", "fd00::5/64"]  # a DHCP renewal gave another address
    before = len(host.changes())
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16")
    changed = [c[1:4] for c in host.changes()[before:] if c[1] == "addr"]
    assert changed == [["addr", "add", "192.168.0.6/16"], ["addr", "del", "192.168.0.5/16"]]


def test_add_and_del_forget_the_nodes_cached_mac_of_the_pod_address(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.9/16")
    host.add_neighbour("192.168.1.2", "eno1.host", state="REACHABLE")  # the MAC of the address's previous pod
    host.add_neighbour("fd00::100", "eno1.host", state="STALE")
    host.add_neighbour("192.168.1.3", "eno1.host", state="PERMANENT")  # set by hand: not ours to drop
    add(monkeypatch, host, tmp_path, "b", "192.168.1.2/16", "fd00::100/64", "192.168.1.3/16")
    assert [n["dst"] for n in host.neighbours] == ["192.168.1.3"]
    assert ["ip", "neigh", "del", "192.168.1.2", "dev", "eno1.host"] in host.changes()
    host.add_neighbour("192.168.1.2", "eno1.host")
    assert call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="b")[0] == 0
    assert [n["dst"] for n in host.neighbours] == ["192.168.1.3"]


def vanishing_before(host, words, remove):
    """Run `remove()` (someone else's flush, the kernel's expiry) just before the plugin's `ip WORDS...`."""
    execute = host.execute

    def racing(argv, stdin, timeout, **options):
        if argv[1:1 + len(words)] == words:
            remove()
        return execute(argv, stdin, timeout, **options)

    host.execute = racing


def test_what_goes_away_between_the_read_and_the_delete_fails_neither_add_nor_del(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.9/16")
    host.add_neighbour("192.168.1.2", "eno1.host")
    vanishing_before(host, ["neigh", "del"], host.neighbours.clear)
    add(monkeypatch, host, tmp_path, "b", "192.168.1.2/16")
    vanishing_before(host, ["route", "del"], lambda: setattr(host, "routes", [r for r in host.routes
                                                                        if r["dst"] != "192.168.1.2/32"]))
    code, out, _ = call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="b")
    assert code == 0, out
    failed = [c for c in host.changes() if c[1:3] in (["neigh", "del"], ["route", "del"])]
    assert len(failed) == 2  # both deletes ran, and failed: the things were gone


def test_a_delete_that_fails_while_the_route_is_still_there_fails_del(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.failures[("route", "del")] = (2, "RTNETLINK answers: Operation not permitted\n")
    code, out, _ = call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID="a")
    assert code == 1 and "Operation not permitted" in out["details"], out
    assert host.routes_on("eno1.host") == ["192.168.1.2/32"]
