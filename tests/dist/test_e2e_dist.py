"""The whole end-to-end suite (tests/e2e, real namespaces, root) against dist/route run by a bare python3."""
import os
import subprocess
import sys

from conftest import REPO


def test_e2e_suite_passes_against_dist_route(dist_route, bare_python, bare_env):
    env = dict(bare_env, ROUTE_PLUGIN=str(dist_route))
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
                           str(REPO / "tests" / "e2e")], cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=1800)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout.splitlines()[-1] and " failed" not in proc.stdout.splitlines()[-1], tail
    # the plugin it tested really was the file, started by the bare venv's python3 (first on PATH)
    assert os.access(dist_route, os.X_OK)
    assert env["PATH"].split(os.pathsep)[0] == str(bare_python)
