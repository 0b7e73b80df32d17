"""Input validation in the manner of libcni's skel: every bad input is a CNI error JSON, and nothing runs."""
import json
import sys
import types

import pytest
from helpers import call, netconf, prev_result

from cniroute import SUPPORTED_VERSIONS, config, schema


@pytest.fixture
def good(tmp_path):
    return netconf(tmp_path, prev_result("192.168.1.2/16"))


def expect_error(monkeypatch, host, command, conf, code, *words, **env):
    rc, out, err = call(monkeypatch, host, command, conf, **env)
    assert rc == 1, out
    assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert out["code"] == code, out
    text = out["msg"] + " " + out["details"]
    for word in words:
        assert word in text, (word, out)
    assert "Traceback" not in err
    assert host.calls == []
    return out


@pytest.mark.parametrize("command, missing", [
    ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"), ("ADD", "CNI_PATH"),
    ("CHECK", "CNI_NETNS"), ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"), ("DEL", "CNI_PATH"),
])
def test_missing_env_var_is_code_4_naming_it(monkeypatch, host, good, command, missing):
    expect_error(monkeypatch, host, command, good, 4, missing, **{missing: None})


def test_del_does_not_need_netns(monkeypatch, host, good):
    assert call(monkeypatch, host, "DEL", good, CNI_NETNS=None)[0] == 0


@pytest.mark.parametrize("command", ["", "add", "FOO", "ADD;rm -rf /"])
def test_unknown_command_is_code_4(monkeypatch, host, good, command):
    expect_error(monkeypatch, host, command, good, 4, "CNI_COMMAND")  # "" is set, empty: without it, the usage


@pytest.mark.parametrize("name, value", [
    ("CNI_IFNAME", "eth0;reboot"), ("CNI_IFNAME", "$(id)"), ("CNI_IFNAME", "e\nth0"), ("CNI_IFNAME", ".."),
    ("CNI_IFNAME", "0123456789abcdef"), ("CNI_CONTAINERID", "../../etc"), ("CNI_CONTAINERID", "-x"),
    ("CNI_CONTAINERID", "a b"),
])
def test_hostile_env_is_code_4(monkeypatch, host, good, name, value):
    expect_error(monkeypatch, host, "ADD", good, 4, name, **{name: value})


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe{}", b"[" * 100000 + b"]" * 100000,
                                  b"{}" + b" " * (config.MAX_STDIN + 1)])
def test_undecodable_stdin_is_code_6(monkeypatch, host, data):
    expect_error(monkeypatch, host, "ADD", data, 6)


def test_version_answers_an_unknown_version_with_the_newest(monkeypatch, host):
    rc, out, _ = call(monkeypatch, host, "VERSION", {"cniVersion": "9.9.9"}, CNI_CONTAINERID=None,
                      CNI_NETNS=None, CNI_IFNAME=None, CNI_PATH=None)
    assert rc == 0 and out["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("data", [b"[]", b"5", b'"x"', b"null"])
def test_json_that_is_not_an_object_is_code_6(monkeypatch, host, data):
    expect_error(monkeypatch, host, "ADD", data, 6, "object")


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", 1, None])
def test_unsupported_version_is_code_1_with_details(monkeypatch, host, good, version):
    out = expect_error(monkeypatch, host, "ADD", {**good, "cniVersion": version}, 1, "1.1.0")
    assert repr(version) in out["details"]


def test_unsupported_prev_result_version_is_code_1(monkeypatch, host, good):
    good["prevResult"]["cniVersion"] = "9.9.9"
    expect_error(monkeypatch, host, "ADD", good, 1, "prevResult")


@pytest.mark.parametrize("key, value, field", [
    ("master", "eth0;reboot", "master"), ("master", "$(reboot)", "master"), ("master", "0123456789abcdef", "master"),
    ("master", "..", "master"), ("master", "eno1\n", "master"), ("master", 5, "master"), ("bridge", "a b", "bridge"),
    ("bridge", "a/b", "bridge"), ("bridge", "a:b", "bridge"), ("name", "bad name", "name"),
    ("name", "../x", "name"), ("stateDir", "relative", "stateDir"), ("prevResult", [], "prevResult"),
])
def test_schema_violation_is_code_7_naming_the_field(monkeypatch, host, good, key, value, field):
    expect_error(monkeypatch, host, "ADD", {**good, key: value}, 7, field)


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p["ips"][0].update(address="300.1.1.1/16"), "prevResult.ips[0].address"),
    (lambda p: p["ips"][0].update(address="192.168.1.2"), "prevResult.ips[0].address"),
    (lambda p: p["ips"][0].update(interface=5), "prevResult.ips[0].interface"),
    (lambda p: p["ips"][0].update(interface="0"), "prevResult.ips[0].interface"),
    (lambda p: p.update(ips={}), "prevResult.ips"),
    (lambda p: p["interfaces"][0].pop("name"), "prevResult.interfaces[0]"),
])
def test_invalid_prev_result_is_code_7_naming_the_field(monkeypatch, host, good, mutate, field):
    mutate(good["prevResult"])
    expect_error(monkeypatch, host, "ADD", good, 7, field)


def test_0_4_0_prev_result_needs_ip_versions(monkeypatch, host, tmp_path):
    conf = netconf(tmp_path, prev_result("192.168.1.2/16", version="0.4.0"), version="0.4.0")
    del conf["prevResult"]["ips"][0]["version"]
    expect_error(monkeypatch, host, "ADD", conf, 7, "prevResult.ips[0]", "version")


def test_unknown_keys_are_ignored(monkeypatch, host, good):
    good.update(ipam={"type": "host-local"}, runtimeConfig={"x": 1}, somethingElse=[1, 2])
    assert call(monkeypatch, host, "ADD", good)[0] == 0


def test_version_lists_every_supported_version(monkeypatch, host):
    rc, out, _ = call(monkeypatch, host, "VERSION", {"cniVersion": "0.4.0"}, CNI_CONTAINERID=None,
                      CNI_NETNS=None, CNI_IFNAME=None, CNI_PATH=None)
    assert rc == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert host.calls == []


def test_schema_versions_match_the_code():
    assert schema.load("config.json")["properties"]["cniVersion"]["enum"] == list(SUPPORTED_VERSIONS)
    covered = [v for name in ("result-0.2.0.json", "result-0.4.0.json", "result-1.0.0.json")
               for v in schema.load(name)["properties"]["cniVersion"]["enum"]]
    assert covered == list(SUPPORTED_VERSIONS)


def test_internal_errors_are_cni_errors_without_traceback(monkeypatch, host, good):
    def explode(*a, **options):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(host, "execute", explode)
    rc, out, err = call(monkeypatch, host, "ADD", good)
    assert rc == 1 and out["code"] == 999 and "boom" in out["details"]
    assert "Traceback" not in err


def test_error_messages_stay_short_whatever_the_input(monkeypatch, host, good):
    good["prevResult"]["ips"][0]["gateway"] = ["x" * 100] * 5000
    out = expect_error(monkeypatch, host, "ADD", good, 7, "prevResult.ips[0].gateway")
    assert len(out["msg"]) + len(out["details"]) < 5000


def test_deep_nesting_is_refused_before_any_validation(monkeypatch, host, good):
    good["prevResult"]["ips"][0]["x"] = json.loads("[" * 100 + "]" * 100)
    expect_error(monkeypatch, host, "ADD", good, 6, "nested deeper")


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_netns_that_is_not_a_network_namespace_is_code_4(monkeypatch, host, good, command):
    out = expect_error(monkeypatch, host, command, good, 4, "CNI_NETNS", "/etc/passwd", CNI_NETNS="/etc/passwd")
    assert "not a network namespace" in out["details"]


def test_a_package_already_imported_counts_as_there(monkeypatch, host, good):
    """sh replaces its module with one without __spec__, on which importlib.util.find_spec raises ValueError:
    a process that imported sh before (a test, a tool) must not get code 999 for it."""
    monkeypatch.setitem(sys.modules, "sh", types.ModuleType("sh"))  # __spec__ None, as sh's own
    code, out, _ = call(monkeypatch, host, "DEL", good)
    assert code == 0, out
