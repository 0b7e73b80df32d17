"""The lean import of sh (tests/system/test_lean_sh.py) with the sh that dist/route bundles, which is the one
that ships (the checks there use the sh installed for the test interpreter, maybe another version)."""
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "system"))
sys.path.insert(0, str(REPO / "tools"))
import build_dist  # noqa: E402
import test_lean_sh  # noqa: E402


def test_bundled_sh_imported_lean_loads_nothing_stood_in_and_runs_ip(dist_route):
    test_lean_sh.check_lean_state(dist_route)


def test_bundled_sh_behaves_as_when_imported_plainly(dist_route):
    test_lean_sh.check_same_behaviour(dist_route)
    assert test_lean_sh.check_version_fallback(dist_route) == build_dist.PINS["sh"][0]  # the bundled one ran
