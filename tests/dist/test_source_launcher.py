"""A source tree's bin/route started by a python3 without the plugin's packages (a node's, as a runtime finds
it) answers CNI code 106 naming what is missing and the two ways out, for every verb; `--version` says it too.
Never 999, which the README keeps for bugs."""
import importlib.machinery
import json
from pathlib import Path

import pytest
from conftest import REPO

BIN_ROUTE = REPO / "bin" / "route"
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
CONF = {"cniVersion": "1.0.0", "name": "n", "type": "route", "master": "eno1"}


def assert_names_the_way_out(text, missing):
    assert f"lacks {missing}, which route needs" in text, text
    assert f"-m pip install -r {REPO / 'requirements.txt'}" in text, text
    assert "one-file build" in text and "dist/route install" in text, text


@pytest.mark.parametrize("cni_env", [{"CNI_COMMAND": "VERSION"}, ADD_ENV, dict(ADD_ENV, CNI_COMMAND="DEL")],
                         ids=["VERSION", "ADD", "DEL"])
def test_every_verb_answers_106_without_sh_and_jsonschema(run_route, cni_env):
    proc = run_route(BIN_ROUTE, stdin=json.dumps(CONF), **cni_env)
    assert proc.returncode == 1, proc
    error = json.loads(proc.stdout)
    assert error["code"] == 106, error
    assert_names_the_way_out(f"{error['msg']}: {error['details']}", "sh and jsonschema")


def test_only_the_missing_package_is_named(run_route, tmp_path):
    with_sh = tmp_path / "site"
    with_sh.mkdir()
    (with_sh / "sh.py").write_bytes(Path(importlib.machinery.PathFinder.find_spec("sh").origin).read_bytes())  # another test may have imported sh
    proc = run_route(BIN_ROUTE, stdin=json.dumps(CONF), env={"PYTHONPATH": str(with_sh)}, **ADD_ENV)
    error = json.loads(proc.stdout)
    assert error["code"] == 106, error
    assert_names_the_way_out(f"{error['msg']}: {error['details']}", "jsonschema")


def test_version_says_the_same_and_fails(run_route):
    proc = run_route(BIN_ROUTE, "--version")
    assert proc.returncode == 1, proc
    assert proc.stdout.startswith("route "), proc
    assert "cannot run as a CNI plugin here (code 106)" in proc.stderr, proc
    assert_names_the_way_out(proc.stderr, "sh and jsonschema")


@pytest.mark.parametrize("command", [["doctor"], ["replay", "/nonexistent.log"]])
def test_the_commands_say_the_same_and_fail(run_route, command):
    proc = run_route(BIN_ROUTE, *command)
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.startswith(f"route {command[0]} cannot run here (code 106): "), proc.stderr
    assert_names_the_way_out(proc.stderr, "sh and jsonschema")
