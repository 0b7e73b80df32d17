"""Property-based fuzzing of stdin and the CNI_* environment, in-process against the fake ip.

Whatever comes in, the plugin answers with one JSON document on stdout (the result, or an error with
cniVersion, code and msg), exits 0 or 1, prints no traceback, never fails with an internal error, and
changes nothing on the host when it refuses the input. CI runs the `ci` profile (2,000 cases per test);
`tox -e fuzz-long` runs `long` (20,000). Inputs that once broke something live in tests/fuzz-corpus/.
"""
import base64
import glob
import json
import os
import tempfile

import pytest
from helpers import call, prev_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakeip import FakeHost

# CI explores the same 2,000 cases every run, so a red CI always names a reproducible input; the long
# profile explores new ones each time.
settings.register_profile("ci", max_examples=2000, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CORPUS = os.path.join(os.path.dirname(__file__), "..", "fuzz-corpus")
VERBS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]
HOSTILE = ["", ".", "..", "eth0;reboot", "$(id)", "`id`", "a\nb", "a b", "x" * 16, "x" * 5000, "../../etc",
           "eno1", "eno1.host", "é", "\x00", "-rf", "--help", "/", "a:b", "\udcff"]

text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=20)


def base_config(version):
    return {"cniVersion": version, "name": "fuzz", "type": "route", "master": "eno1",
            "prevResult": prev_result("192.168.1.2/16", "fd00::100/64", version=version),
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}


@st.composite
def mutated_config(draw):
    """A valid config, then a few keys (at any depth) replaced, removed or added."""
    doc = base_config(draw(st.sampled_from(["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])))
    for _ in range(draw(st.integers(0, 4))):
        target = doc
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target))))
            if not isinstance(target[key], (dict, list)):
                break
            target = target[key]
        if isinstance(target, dict):
            key = draw(st.one_of(st.sampled_from(sorted(target) or ["x"]), text))
            if draw(st.booleans()):
                target[key] = draw(json_value)
            else:
                target.pop(key, None)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(json_value)
    return doc


stdin = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    mutated_config().map(lambda d: json.dumps(d).encode()),
    mutated_config().map(lambda d: json.dumps(d).encode("utf-16")),
    st.integers(1, 3000).map(lambda depth: b'{"cniVersion":"1.0.0","x":' + b"[" * depth + b"]" * depth + b"}"),
)
environment = st.fixed_dictionaries({}, optional={
    "CNI_COMMAND": st.one_of(st.sampled_from(VERBS), text),
    "CNI_CONTAINERID": st.one_of(st.just("c1"), text),
    "CNI_NETNS": st.one_of(st.just("/var/run/netns/pod1"), text),
    "CNI_IFNAME": st.one_of(st.just("eth0"), text),
    "CNI_PATH": st.one_of(st.just("/opt/cni/bin"), text),
})


def confined(data, state_dir):
    """Keep whatever the fuzzer wrote inside a temporary directory: stateDir and logFile are forced there."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return data
    if not isinstance(doc, dict):
        return data
    doc["stateDir"] = state_dir
    doc.pop("logFile", None)
    return json.dumps(doc).encode()


def check_one(monkeypatch, env, data):
    host = FakeHost()
    host.add_link("eno1", addresses=["192.168.0.5/16", "fd00::5/64"])
    with tempfile.TemporaryDirectory() as state_dir:
        env = {k: (v.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "")
                   if isinstance(v, str) else v) for k, v in env.items()}
        full_env = {"CNI_COMMAND": None, "CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None,
                    "CNI_PATH": None, **env}
        command = full_env.pop("CNI_COMMAND")
        code, out, err = call(monkeypatch, host, command, confined(data, state_dir), **full_env)
    if command is None:  # no runtime's call: a person gets the usage
        assert (code, out, host.calls) == (2, None, []) and err.startswith("usage: route"), (code, out, err)
        return
    assert code in (0, 1)
    assert "Traceback" not in err
    if code == 1:
        assert isinstance(out, dict) and set(out) == {"cniVersion", "code", "msg", "details"}
        assert isinstance(out["cniVersion"], str) and isinstance(out["code"], int) and isinstance(out["msg"], str)
        assert out["code"] != 999, out  # an internal error is a bug the fuzzer found
        if out["code"] in (1, 4, 6, 7):
            assert host.changes() == [], (out, host.changes())
    else:
        assert out is None or isinstance(out, dict)


@given(env=environment, data=stdin)
def test_fuzz_stdin_and_env(monkeypatch, env, data):
    check_one(monkeypatch, env, data)


@given(data=mutated_config(), verb=st.sampled_from(VERBS))
def test_fuzz_configs_with_a_sane_environment(monkeypatch, data, verb):
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/pod1", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin"}
    check_one(monkeypatch, env, json.dumps(data).encode())


def corpus():
    return sorted(glob.glob(os.path.join(CORPUS, "*.json")))


@pytest.mark.parametrize("path", corpus(), ids=os.path.basename)
def test_fuzz_corpus(monkeypatch, path):
    with open(path) as f:
        case = json.load(f)
    data = base64.b64decode(case["stdin_b64"]) if "stdin_b64" in case else json.dumps(case["stdin"]).encode()
    check_one(monkeypatch, case["env"], data)
