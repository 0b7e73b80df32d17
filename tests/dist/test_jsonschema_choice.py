"""The bundled jsonschema 4.17.3 (pure Python) judges our schemas exactly as the dev jsonschema (4.18+) does.

Documents: valid configs and prevResults of every result schema, and every variant made by putting a value
from PALETTE at one place in them (trailing and leading newlines for the `(?![\\s\\S])` patterns, floats for
integers, bools for numbers, bounds) or by deleting one key. Compared: validity, every error (where, which
keyword), and the error the plugin reports (best_match: where, which keyword).
"""
import copy
import json
import subprocess

import jsonschema
from conftest import REPO

SCHEMAS = {p.name: json.loads(p.read_text()) for p in sorted((REPO / "schemas").glob("*.json"))}

PALETTE = ["", "eno1", "eno1\n", "\neno1", "eno1\r", "eno1 ", "a" * 15, "a" * 16, ".", "..", "a/b", "/abs",
           "/abs\n", "rel/x", "10.0.0.2/24", "10.0.0.2/24\n", "10.0.0.2/2400", "10.0.0.2", "10.0.0.2\n",
           "fd00::1/64", "fd00::1\n", "\u0661\u0662/24", "4", "6", "1.0.0", "1.1.0", "0.4.0", "0.2.0", "9.9.9",
           "n" * 201, 0, 1, -1, 4095, 4096, 4096.0, 4096.5, 0.0, 0.001, 300, 300.0, 300.1, 1e300, True, False, None,
           [], {}, ["x"], [{}], {"a": 1}]

CONFIG = {"cniVersion": "1.0.0", "name": "net-1", "type": "route", "master": "eno1", "bridge": "eno1.host",
          "stateDir": "/run/cni-route", "logFile": "/var/log/route.log", "logMaxBytes": 4096, "dryRun": False,
          "ipTimeoutSeconds": 1.5, "prevResult": {},
          "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}
RESULTS = {
    "result-0.2.0.json": {"cniVersion": "0.2.0",
                          "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
                                  "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]},
                          "ip6": {"ip": "fd00::2/64"}, "dns": {"nameservers": ["10.0.0.1"]}},
    "result-0.4.0.json": {"cniVersion": "0.4.0",
                          "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}],
                          "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}], "dns": {"nameservers": ["10.0.0.1"]}},
    "result-1.0.0.json": {"cniVersion": "1.0.0",
                          "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p",
                                          "mtu": 1500}],
                          "ips": [{"address": "fd00::2/64", "gateway": "fd00::1", "interface": 0}],
                          "routes": [{"dst": "::/0", "gw": "fd00::1", "mtu": 1500, "priority": 10}],
                          "dns": {"nameservers": ["fd00::1"], "domain": "example", "search": ["a"],
                                  "options": ["ndots:2"]}},
}

# Run by the bare python inside the bundle: its jsonschema, its schemas.
BUNDLED = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import _route_boot
_route_boot.prepare()
import jsonschema
from cniroute import schema
cases = json.load(sys.stdin)
print(json.dumps([judge(jsonschema, schema.load(name), doc) for name, doc in cases]))
'''


def judge(jsonschema, schema, document):
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted({(json.dumps(list(e.absolute_path)), e.validator) for e in validator.iter_errors(document)})
    best = jsonschema.exceptions.best_match(validator.iter_errors(document))
    return {"valid": validator.is_valid(document), "errors": [list(e) for e in errors],
            "best": None if best is None else [list(best.absolute_path), best.validator]}


JUDGE = "import json\n" + __import__("inspect").getsource(judge)


def places(document, path=()):
    """Every path to a value in the document."""
    yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from places(value, (*path, index))


def replaced(document, path, value):
    document = copy.deepcopy(document)
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if value is DELETE:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return document


DELETE = object()


def cases():
    out = []
    for name, base in [("config.json", CONFIG), *RESULTS.items()]:
        out.append((name, base))
        for path in places(base):
            for value in [*PALETTE, DELETE] if path else PALETTE:
                out.append((name, replaced(base, path, value)))
    return out


def test_bundled_jsonschema_agrees_with_the_dev_one(dist_route, bare_python, bare_env):
    all_cases = cases()
    for name, base in [("config.json", CONFIG), *RESULTS.items()]:
        assert jsonschema.Draft202012Validator(SCHEMAS[name]).is_valid(base), name
    assert len(all_cases) > 2000
    proc = subprocess.run([str(bare_python / "python3"), "-c", JUDGE + BUNDLED, str(dist_route)],
                          input=json.dumps(all_cases), env=bare_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bundled = json.loads(proc.stdout)
    dev = [judge(jsonschema, SCHEMAS[name], document) for name, document in all_cases]
    disagree = [(case, d, b) for case, d, b in zip(all_cases, dev, bundled) if d != b]
    assert not disagree, f"{len(disagree)} disagreements, first: {disagree[:3]}"
    valid = sum(d["valid"] for d in dev)
    assert 200 < valid < len(dev) - 200  # both kinds well represented
    verdicts = {json.dumps(case): d["valid"] for case, d in zip(all_cases, dev)}
    for field in ("master", "bridge", "name", "stateDir"):  # trailing newline: Python's `$` would let it pass
        assert verdicts[json.dumps(("config.json", replaced(CONFIG, (field,), "eno1\n")))] is False, field
    assert verdicts[json.dumps(("result-1.0.0.json", replaced(RESULTS["result-1.0.0.json"], ("ips", 0, "address"),
                                                              "10.0.0.2/24\n")))] is False


def test_bundled_version_is_the_pure_python_one(dist_route, bare_python, bare_env):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _route_boot; _route_boot.prepare(); "
            "from importlib import metadata; print(metadata.version('jsonschema'), metadata.version('pyrsistent'))")
    proc = subprocess.run([str(bare_python / "python3"), "-c", code, str(dist_route)], env=bare_env,
                          capture_output=True, text=True)
    assert proc.stdout.split() == ["4.17.3", "0.20.0"], proc.stderr
    from importlib import metadata

    assert not metadata.version("jsonschema").startswith("4.17")  # the dev one really is another
