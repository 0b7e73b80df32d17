"""Fixtures for the one-file build (issue 7): dist/route built once per session, and a bare interpreter.

  dist_route   (session) $ROUTE_PLUGIN when it is a one-file build (tools/test.sh: the dist/route setup built,
               the one the e2e suite runs), else one built by tools/build_dist.py --output <tmp>/route
  bare_python  (session) Path of the bin/ of `python3 -m venv --without-pip`: nothing installed
  bare_env     (session) os.environ with that bin/ first on PATH, PYTHONNOUSERSITE=1, no PYTHONPATH/CNI_*
  run_route    (session) run_route(argv_or_path, *args, stdin="", env=None, **cni_env) -> CompletedProcess,
               the file executed directly (its shebang finds the bare python3 on PATH)
"""
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "build_dist.py"


def build(output):
    proc = subprocess.run([sys.executable, str(BUILD), "--output", str(output)], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"tools/build_dist.py failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return Path(output)


@pytest.fixture(scope="session")
def dist_route(tmp_path_factory):
    given = os.environ.get("ROUTE_PLUGIN")
    if given and zipfile.is_zipfile(given):
        return Path(given)
    return build(tmp_path_factory.mktemp("dist") / "route")


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin"


@pytest.fixture(scope="session")
def bare_env(bare_python):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP") and not k.startswith("CNI_")}
    env["PATH"] = f"{bare_python}{os.pathsep}{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="session")
def run_route(bare_env):
    def run(route, *args, stdin="", env=None, timeout=60, **cni_env):
        return subprocess.run([str(route), *map(str, args)], input=stdin, capture_output=True, text=True,
                              timeout=timeout, env={**bare_env, **(env or {}), **cni_env})
    return run


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
