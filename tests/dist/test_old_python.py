"""A python3 older than the plugin needs (Ubuntu 20.04's 3.8, Amazon Linux 2's 3.7, RHEL 8's 3.6) gets, for every
verb, a CNI error JSON (code 106) that names the version found and the version needed, not a traceback.

The start of every call (the one-file build's __main__ and _route_boot, bin/route, and cniroute's __init__, cli,
errors and interpreter) is written in Python 3.4's syntax and imports nothing else before the check. Tested three
ways: those files parsed as Python 3.4; the build run by every python3 older than 3.9 this machine has (pyenv);
and, everywhere, the build run with sys.version_info set to 3.8.10, which must import only the start.
"""
import ast
import json
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import build_dist  # noqa: E402
import pythons  # noqa: E402

from cniroute.interpreter import OLDEST  # noqa: E402

START = {"cniroute", "cniroute.cli", "cniroute.errors", "cniroute.interpreter"}
NEEDED = f"route needs Python {OLDEST[0]}.{OLDEST[1]} or newer"
POD_ENV = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
VERBS = {"ADD": POD_ENV, "CHECK": POD_ENV, "DEL": POD_ENV, "GC": {"CNI_PATH": "/usr/lib/cni"},
         "STATUS": {"CNI_PATH": "/usr/lib/cni"}, "VERSION": {}}
CONF = {"cniVersion": "1.1.0", "name": "n", "type": "route", "master": "eno1",
        "cni.dev/valid-attachments": [], "prevResult": {"cniVersion": "1.1.0", "ips": []}}
# Runs the one-file build as its shebang would, but with sys.version_info of an old python3; reports on stderr
# which of the plugin's modules were imported, as the launcher ends the process (os._exit: no atexit).
FAKE_OLD = r"""
import os, runpy, sys
archive = sys.argv[1]
sys.version_info = (3, 8, 10, "final", 0)
sys.argv = [archive] + sys.argv[2:]
end = os._exit
def report_and_end(code):
    sys.stderr.write("\nimported: " + " ".join(sorted(
        name for name in sys.modules if name.split(".")[0] == "cniroute")) + "\n")
    sys.stderr.flush()
    end(code)
os._exit = report_and_end
runpy.run_path(archive, run_name="__main__")
"""


def start_sources():
    lib = REPO / "lib" / "cniroute"
    files = {str(path.relative_to(REPO)): path.read_text() for path in
             [REPO / "bin" / "route", *(lib / f"{name}.py" for name in ("__init__", "cli", "errors", "interpreter"))]}
    return {**files, "__main__.py": build_dist.MAIN, "_route_boot.py": build_dist.BOOT}


def test_the_start_of_every_call_is_python_34():
    for name, source in start_sources().items():
        ast.parse(source, name, feature_version=(3, 4))


def test_cli_imports_only_the_start_before_the_check():
    tree = ast.parse((REPO / "lib" / "cniroute" / "cli.py").read_text())
    imported = set()
    for node in tree.body:  # the module's top level: what `import cniroute.cli` runs
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{'.' * node.level}{node.module or ''}:{alias.name}" for alias in node.names}
    assert imported == {"json", "os", "re", "sys", ".:SUPPORTED_VERSIONS", ".:interpreter", ".errors:CNIError",
                        ".errors:InvalidEnvironment", ".errors:UnsuitableInterpreter"}, imported


def assert_refused(proc, found):
    assert proc.returncode == 1, proc
    error = json.loads(proc.stdout)
    assert error["code"] == 106, error
    assert f"is Python {found}; {NEEDED}" in error["msg"], error
    assert "the first `python3` on its PATH" in error["details"], error
    return error


@pytest.mark.parametrize("verb", VERBS)
def test_an_old_python_gets_code_106_from_every_verb(dist_route, bare_python, bare_env, verb):
    proc = subprocess.run([str(bare_python / "python3"), "-c", FAKE_OLD, str(dist_route)], input=json.dumps(CONF),
                          env={**bare_env, "CNI_COMMAND": verb, **VERBS[verb]}, capture_output=True, text=True,
                          timeout=60)
    assert_refused(proc, "3.8.10")
    assert proc.stderr.strip().splitlines()[-1] == "imported: " + " ".join(sorted(START)), proc.stderr


def test_an_old_python_refuses_a_persons_command_in_one_line(dist_route, bare_python, bare_env):
    for argv in (["--version"], ["doctor"], ["install", "--bin-dir", "/nonexistent"]):
        proc = subprocess.run([str(bare_python / "python3"), "-c", FAKE_OLD, str(dist_route), *argv], env=bare_env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == "", proc
        refusal, imported = [line for line in proc.stderr.splitlines() if line]
        assert refusal.startswith("route cannot run here (code 106): ") and f"3.8.10; {NEEDED}" in refusal, refusal
        assert imported == "imported: " + " ".join(sorted(START)), proc.stderr


OLD = pythons.too_old(pythons.find())


@pytest.mark.parametrize("version,python", OLD or [pytest.param(None, None, marks=pytest.mark.skip(
    reason="no python3 older than 3.9 on this machine (pyenv); the faked-version tests above still run"))],
    ids=[".".join(map(str, v)) for v, _ in OLD] or None)
def test_real_old_pythons_get_code_106_from_every_verb_of_both_launchers(dist_route, bare_env, version, python):
    found = ".".join(map(str, version))
    for launcher in (dist_route, REPO / "bin" / "route"):
        for verb, cni_env in VERBS.items():
            proc = subprocess.run([python, str(launcher)], input=json.dumps(CONF),
                                  env={**bare_env, "CNI_COMMAND": verb, **cni_env}, capture_output=True, text=True,
                                  timeout=60)
            assert_refused(proc, found)
            assert proc.stderr == "", proc.stderr  # nothing else: no traceback, no log block
