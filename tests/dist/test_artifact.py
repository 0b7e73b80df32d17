"""dist/route is one executable zipapp that a bare python3 runs: bundled pure-Python deps, legacy .pyc used."""
import importlib.util
import json
import marshal
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO, build, sha256

sys.path.insert(0, str(REPO / "tools"))
import build_dist  # noqa: E402
import pythons  # noqa: E402

BUNDLED = {name: version for name, (version, _) in build_dist.PINS.items()}
VERSION_IN = '{"cniVersion": "1.0.0"}'
INVALID = {"cniVersion": "1.0.0", "name": "n", "type": "route", "master": "eno1\n"}
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/nonexistent"}

# Run inside the bundle's own start-up, then report what was imported from where, and what got compiled.
PROBE = r'''
import builtins, json, sys
sys.path.insert(0, sys.argv[1])
import _route_boot
_route_boot.prepare()
compiled = []
real = builtins.compile
def spy(source, filename, *args, **kwargs):
    compiled.append(str(filename))
    return real(source, filename, *args, **kwargs)
builtins.compile = spy
import cniroute.cli, cniroute.person, cniroute.install, cniroute.schema, jsonschema, sh, attr, attrs, pyrsistent
import jsonschema.validators, pyrsistent._pvector as pv
cniroute.schema.load("config.json")
jsonschema.Draft202012Validator(cniroute.schema.load("config.json")).is_valid({"$ref": 1})  # loads vocabularies
tops = ("cniroute", "jsonschema", "sh", "attr", "attrs", "pyrsistent", "_pyrsistent_version", "_route_boot")
print(json.dumps({
    "files": {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] in tops},
    "compiled": compiled,
    "pure_pvector": pv.pvector is pv.python_pvector,
    "pvectorc": "pvectorc" in sys.modules and sys.modules["pvectorc"] is not None,
    "path": sys.path,
}))
'''


def code_section(data):
    """The table of the code section between the header and the zip, as _route_boot reads it."""
    start = data.index(build_dist.CODE_MARK) + len(build_dist.CODE_MARK)
    assert data[start:start + 4] == importlib.util.MAGIC_NUMBER  # built for this python (conftest, dist_route)
    assert int.from_bytes(data[start + 4:start + 12], "little") == len(data)  # the size it checks at start
    boot, size = int.from_bytes(data[start + 24:start + 28], "little"), int.from_bytes(data[start + 28:start + 36], "little")
    return marshal.loads(data[start + 40 + boot:start + 40 + boot + size])


def entries(path):
    with zipfile.ZipFile(path) as z:
        return {info.filename: info for info in z.infolist()}


def test_one_executable_zipapp_with_the_package_schemas_and_pinned_deps(dist_route):
    data = dist_route.read_bytes()
    assert data.startswith(build_dist.HEADER)
    assert build_dist.HEADER == b"#!/bin/sh\nexec python3 -S -E -c '" + build_dist.LAUNCHER.encode() + b"' \"$0\" \"$@\"\n"
    assert stat.S_IMODE(dist_route.stat().st_mode) == 0o755
    names = entries(dist_route)
    assert "__main__.py" in names and "__main__.pyc" in names and "_route_boot.pyc" in names
    for schema in (REPO / "schemas").glob("*.json"):
        with zipfile.ZipFile(dist_route) as z:
            assert z.read(f"cniroute/schemas/{schema.name}") == schema.read_bytes(), schema.name
    # cniroute's and sh's bytecode is in the code section (below), their sources in the zip; the rest of the
    # bundle in the legacy layout: a .pyc beside every .py, no __pycache__, nothing compiled for a platform
    section = code_section(data)
    for module in (REPO / "lib").rglob("*.py"):  # subpackages (cniroute.doctor) included
        path = module.relative_to(REPO / "lib")
        name = ".".join(path.parent.parts if module.stem == "__init__" else path.with_suffix("").parts)
        assert str(path) in names and name in section["modules"], path
        assert section["modules"][name][0] == (module.stem == "__init__"), name  # a package is imported as one
    assert section["modules"]["cniroute"][0] and section["modules"]["sh"][0] and "sh/__init__.py" in names
    assert not [n for n in names if n.endswith(".pyc") and n.split("/")[0] in ("cniroute", "sh")]
    for top in ("jsonschema/__init__.py", "attr/__init__.py", "attrs/__init__.py", "pyrsistent/__init__.py"):
        assert top in names and top + "c" in names, top
    assert not [n for n in names if "__pycache__" in n]
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dll", ".dylib"))]
    assert not [n for n in names if n.endswith(".py") and n + "c" not in names and n.split("/")[0] not in
                ("cniroute", "sh")]
    with zipfile.ZipFile(dist_route) as z:
        assert {path: z.read(path) for path in section["data"]} == section["data"]  # the same data files
        assert sorted(section["data"]) == sorted(n for n in names if n.startswith("cniroute/")
                                                 and not n.endswith((".py", ".pyc")))
    assert not [n for n in names if n.startswith(("jsonschema/tests/", "bin/"))]
    # every bundled distribution keeps its licence
    for name, version in BUNDLED.items():
        dist_info = f"{name}-{version}.dist-info/"
        assert [n for n in names if n.startswith(dist_info) and ("LICEN" in n.upper() or "COPYING" in n)], name
    with zipfile.ZipFile(dist_route) as z:
        info = json.loads(z.read("cniroute/_bundle.json"))
    assert info["bundled"] == BUNDLED
    assert info["bytecode"]["cache_tag"] == sys.implementation.cache_tag


def test_the_bare_venv_has_nothing_installed(bare_python, bare_env):
    for module in ("jsonschema", "sh", "attrs", "pyrsistent"):
        proc = subprocess.run(["python3", "-c", f"import {module}"], env=bare_env, capture_output=True, text=True)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module
    proc = subprocess.run(["python3", "-c", "import sys; print(sys.prefix)"], env=bare_env, capture_output=True,
                          text=True)
    assert proc.stdout.strip() == str(bare_python.parent)


def test_bare_python_answers_version_and_dash_dash_version(dist_route, run_route):
    proc = run_route(dist_route, stdin=VERSION_IN, CNI_COMMAND="VERSION")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
    proc = run_route(dist_route, "--version")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("route 0.") or first.startswith("route "), first
    assert second.startswith("bundled: " + ", ".join(f"{k} {v}" for k, v in BUNDLED.items())), second
    assert sys.implementation.cache_tag in second


def test_the_process_ends_at_once_and_loses_nothing_it_printed(dist_route, run_route, tmp_path):
    """The launcher ends with os._exit (cli.run): no atexit, no teardown, yet a rejection's answer on stdout and
    the log block on stderr (no logFile) arrive whole, and a person's command's buffered print too."""
    marker = tmp_path / "atexit-ran"
    hook = tmp_path / "hook.py"  # registers an atexit handler in the plugin's process, before it starts
    hook.write_text(f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').close())\n")
    proc = run_route(dist_route, stdin=json.dumps(INVALID), **ADD_ENV)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 7
    block = proc.stderr.splitlines()
    assert block[0].startswith("# == route ") and block[-1].startswith("# error code 7: invalid master"), proc.stderr
    ended = subprocess.run([sys.executable, "-c", f"import runpy, sys; sys.argv = [{str(dist_route)!r}, '--version']; "
                            f"exec(open({str(hook)!r}).read()); runpy.run_path(sys.argv[0], run_name='__main__')"],
                           capture_output=True, text=True, timeout=60)
    assert ended.returncode == 0 and ended.stdout.startswith("route "), ended
    assert not marker.exists()  # the interpreter's shutdown never ran


def test_bare_python_validates_with_the_bundled_jsonschema(dist_route, run_route):
    proc = run_route(dist_route, stdin=json.dumps(INVALID), **ADD_ENV)
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["code"] == 7 and answer["msg"] == "invalid master", answer


def test_bytecode_is_used_no_module_is_compiled_and_pyrsistent_is_pure(dist_route, bare_python, bare_env):
    proc = subprocess.run([str(bare_python / "python3"), "-c", PROBE, str(dist_route)], env=bare_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)
    files = {name: path for name, path in probe["files"].items() if path is not None}
    assert len(files) > 40, files
    assert {name for name, path in files.items() if not path.endswith(".pyc")} == set(), files
    pinned = probe["path"][-1]  # after the standard library
    assert pinned.startswith("/proc/self/fd/"), probe["path"]
    assert all(path.startswith(pinned + "/") for path in files.values() if "_route_boot" not in path), files
    assert [f for f in probe["compiled"] if f.endswith(".py")] == []  # attrs still generates methods: fine
    assert probe["pure_pvector"] and not probe["pvectorc"]
    assert not [p for p in probe["path"] if "site-packages" in p or "dist-packages" in p]


def test_a_traceback_through_the_code_section_shows_the_source_lines(dist_route, bare_python, bare_env):
    """Person commands can end in a traceback: its lines come from the sources in the zip, for modules (and
    packages) the code section loaded."""
    probe = ("import sys, traceback; sys.path.insert(0, sys.argv[1]); import _route_boot; _route_boot.prepare()\n"
             "import cniroute, cniroute.config\n"
             "print(type(cniroute.config.__loader__).__name__, cniroute.__loader__.get_source('cniroute')[:3])\n"
             "try:\n    cniroute.config.load({'cniVersion': '1.0.0', 'name': 'n', 'type': 'route', 'master': 5})\n"
             "except Exception:\n    traceback.print_exc()\n")
    proc = subprocess.run([str(bare_python / "python3"), "-c", probe, str(dist_route)], env=bare_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == 'Bundled """\n', proc
    assert 'File "cniroute/config.py"' in proc.stderr and "    schema.validate(document" in proc.stderr, proc.stderr


def test_site_packages_and_pythonpath_cannot_shadow_the_bundle(dist_route, tmp_path, run_route):
    evil = tmp_path / "evil"
    for module in ("jsonschema", "attrs", "pyrsistent", "cniroute"):
        (evil / module).mkdir(parents=True)
        (evil / module / "__init__.py").write_text("raise SystemExit('shadowed!')\n")
    (evil / "sh.py").write_text("raise SystemExit('shadowed!')\n")
    (evil / "pvectorc.py").write_text("raise SystemExit('shadowed!')\n")
    proc = run_route(dist_route, stdin=json.dumps(INVALID), env={"PYTHONPATH": str(evil)}, **ADD_ENV)
    assert json.loads(proc.stdout)["code"] == 7, proc.stdout + proc.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    for item in evil.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, site / item.name)
    proc = run_route(dist_route, stdin=json.dumps(INVALID), env={"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
                     **ADD_ENV)
    assert json.loads(proc.stdout)["code"] == 7, proc.stdout + proc.stderr


def test_the_build_is_reproducible(tmp_path):
    assert sha256(build(tmp_path / "one" / "route")) == sha256(build(tmp_path / "two" / "route"))


def other_pythons():
    """CPython 3.9+ interpreters of another minor version than this one, where the machine has them."""
    return [(f"{version[0]}.{version[1]}", path) for version, path in pythons.supported(pythons.find())
            if version[:2] != sys.version_info[:2]]


@pytest.mark.parametrize("version,python", other_pythons() or [pytest.param(None, None, marks=pytest.mark.skip(
    reason="no other CPython >= 3.9 on this machine"))])
def test_other_pythons_run_it_from_the_sources(dist_route, version, python, bare_env):
    """A node whose python3 is another minor version ignores the .pyc and compiles the bundled sources."""
    env = {**bare_env, **ADD_ENV}
    proc = subprocess.run([str(python), str(dist_route)], input=json.dumps(INVALID), env=env, capture_output=True,
                          text=True, timeout=60)
    assert json.loads(proc.stdout)["code"] == 7, (version, proc.stdout, proc.stderr)
    proc = subprocess.run([str(python), str(dist_route), "--version"], env=bare_env, capture_output=True, text=True)
    assert f"python {version}." in proc.stdout, proc.stdout + proc.stderr


def test_a_call_reads_no_zip_directory_and_looks_for_no_package(dist_route, bare_python, bare_env):
    """The file's own launcher (from its header) runs _route_boot from the code section, so zipimport never reads
    the zip's directory; and the one-file build's start looks for no package (importlib.util is not imported)."""
    launcher = dist_route.read_bytes().split(b" -c '", 1)[1].split(b"' \"$0\"", 1)[0].decode()
    proc = subprocess.run([str(bare_python / "python3"), "-S", "-E", "-v", "-c", launcher, str(dist_route)],
                          input=VERSION_IN, capture_output=True, text=True, timeout=60,
                          env={**bare_env, "CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0 and "supportedVersions" in proc.stdout, proc
    assert "zipimport: found" not in proc.stderr
    assert "import 'importlib.util'" not in proc.stderr
