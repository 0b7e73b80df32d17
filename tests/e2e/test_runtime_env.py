"""Plugins start as a runtime starts them: a system PATH, the node's python3, nothing of the test's virtualenv.

tox puts its virtualenv first on PATH; a plugin that inherited it found sh and jsonschema, which no node has,
and the suite passed while a fresh node failed every ADD. These tests pin the fix: the canary that ends every
e2e chain (tests/cni-canary) fails a call whose environment leaked, and neither way the suite starts plugins
(the libcni driver, `libcni.plugin_argv`) leaks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beds import libcni, netns, runtime

LEAKED = {  # what tox's environment gave every plugin before: its virtualenv first on PATH
    "PATH": f"{Path(sys.executable).parent}:{runtime.NODE_PATH}",
    "VIRTUAL_ENV": sys.prefix,
}


def canary(env, conf):
    return subprocess.run([str(libcni.CANARY_PLUGIN)], input=json.dumps(conf), env=env, capture_output=True,
                          text=True, timeout=30)


def test_the_canary_fails_a_call_whose_environment_leaked():
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "canary", "venv": sys.prefix,
            "prevResult": {"cniVersion": "1.0.0", "ips": []}}
    leaked = canary({**LEAKED, "CNI_COMMAND": "ADD"}, conf)
    assert leaked.returncode == 1, leaked
    error = json.loads(leaked.stdout)
    assert error["code"] == 199 and "VIRTUAL_ENV is set" in error["details"], error
    assert f"PATH has {Path(sys.executable).parent}" in error["details"], error
    assert "can import sh" in error["details"], error  # the venv's python3 was the one PATH found

    clean = canary(runtime.runtime_env(CNI_COMMAND="ADD"), conf)
    assert clean.returncode == 0, clean
    assert json.loads(clean.stdout) == conf["prevResult"]


def test_the_driver_gives_plugins_a_runtime_environment(cni, chain, topo):
    """The whole chain through libcni: the canary at its end would fail ADD if anything leaked."""
    conf = chain()
    assert json.loads(conf.read_text())["plugins"][-1] == {"type": "canary", "venv": sys.prefix}
    pod, _ = topo.add_pod()
    rc, out, err = cni.add(conf, pod)
    assert rc == 0, f"{out}\n{err}"
    rc, out, err = cni.delete(conf, pod)
    assert rc == 0, f"{out}\n{err}"


def test_the_driver_with_a_leaked_environment_is_caught(cni, chain, topo, cnidriver):
    """The same call as the driver makes it, but with the environment the suite used to pass: the canary
    says so, so reintroducing the leak fails every e2e test."""
    pod, pod_path = topo.add_pod()
    argv = [cnidriver, "-cache-dir", str(cni.cache_dir), "-container-id", "leak", "-ifname", "eth0", "add",
            str(chain()), pod_path]
    proc = topo.node_exec(argv, env={**LEAKED, "CNI_PATH": cni.cni_path}, timeout=60)
    assert proc.returncode != 0, proc
    assert json.loads(proc.stdout)["msg"] == "the test environment leaked into a plugin", proc


def test_plugin_argv_is_a_runtime_environment_built_from_scratch(topo, tmp_path):
    env_dump = tmp_path / "env"
    probe = tmp_path / "probe"
    probe.write_text(f"#!/bin/sh\nenv > {env_dump}\n")
    probe.chmod(0o755)
    subprocess.run(libcni.plugin_argv(topo.node, probe, "ADD", container_id="c9"), check=True, timeout=30)
    env = dict(line.split("=", 1) for line in env_dump.read_text().splitlines())
    env.pop("PWD", None)  # the shell's own
    assert env == {"PATH": runtime.NODE_PATH, "CNI_COMMAND": "ADD", "CNI_PATH": str(libcni.REFERENCE_PLUGINS),
                   "CNI_CONTAINERID": "c9", "CNI_IFNAME": "eth0", "CNI_NETNS": netns.netns_path(topo.node)}


def test_the_plugin_runs_with_the_nodes_python3(topo, route_plugin):
    """The python3 that a runtime's PATH finds runs the plugin: the system's, or ROUTE_NODE_PYTHON (CI runs the
    suite again with the oldest and the newest supported one)."""
    if not libcni.is_one_file_build(route_plugin):
        pytest.skip("a source tree's bin/route runs with the development interpreter (libcni.install_route)")
    expected = runtime.NODE_PYTHON or shutil.which("python3", path=runtime.NODE_PATH)
    version = subprocess.run([expected, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    argv = libcni.plugin_argv(topo.node, route_plugin, "VERSION")
    proc = subprocess.run([*argv[:-1], str(route_plugin), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc
    assert f"; python {version})" in proc.stdout.splitlines()[0], (expected, proc.stdout)
