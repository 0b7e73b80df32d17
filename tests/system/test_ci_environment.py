"""CI runs the README's test command as the README promises it works: in Debian's default environment, so the
tests run on the python3 a node has (Debian 12's), not on a newer one the CI machine puts first on its PATH,
which would hide an API Debian's python3 lacks."""
import os
import subprocess
import sys

import pytest
from test_newcomer import DEBIAN_PATH, REPO


def test_ci_runs_the_test_command_with_debians_default_environment_only(tmp_path):
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_bytes((REPO / ".ci" / "run").read_bytes())
    (tmp_path / "tools").mkdir()
    stand_in = tmp_path / "tools" / "test.sh"  # what CI then runs: here, what it is given
    stand_in.write_text("#!/bin/sh\nenv\n")
    stand_in.chmod(0o755)
    caller = {"PATH": f"/root/.pyenv/shims:{tmp_path}:{DEBIAN_PATH}", "HOME": "/root", "PYTHONPATH": str(tmp_path),
              "VIRTUAL_ENV": str(tmp_path), "GOCACHE": str(tmp_path / "gocache")}
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=caller, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc
    seen = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    seen.pop("PWD", None)  # the shell's own
    assert seen == {"PATH": DEBIAN_PATH, "HOME": "/root", "CI": "true", "GOCACHE": caller["GOCACHE"]}


def test_in_ci_the_tests_run_on_the_python3_of_debians_default_path():
    if not os.environ.get("CI"):
        pytest.skip("CI's check (.ci/run): a developer may run the tests on another Python")
    node = subprocess.run(["python3", "-c", "import sys; print(sys.prefix); print(sys.version)"],
                          env={"PATH": DEBIAN_PATH}, capture_output=True, text=True, timeout=60, check=True)
    assert node.stdout.splitlines() == [sys.base_prefix, sys.version], \
        f"the tests run on {sys.base_prefix} (Python {sys.version}), a node runs {node.stdout!r}"
