"""The plugin file run by a person, without a runtime's CNI environment: the usage on stderr and exit 2, not a
CNI error JSON and the log block of a call about container None; a runtime's call is answered as before."""
import json


def test_run_without_cni_command_it_prints_the_usage(dist_route, run_route):
    proc = run_route(dist_route)
    assert (proc.returncode, proc.stdout) == (2, ""), proc
    assert proc.stderr.startswith("usage: route") and "# container" not in proc.stderr, proc.stderr
    assert "remove" in proc.stderr and "docs/install.md" in proc.stderr  # the commands, and where to read more


def test_a_runtimes_call_is_answered_as_before(dist_route, run_route):
    version = run_route(dist_route, stdin='{"cniVersion": "1.0.0"}', CNI_COMMAND="VERSION")
    assert version.returncode == 0 and "1.1.0" in json.loads(version.stdout)["supportedVersions"], version
    empty = run_route(dist_route, stdin="{}", CNI_COMMAND="")
    assert empty.returncode == 1 and json.loads(empty.stdout)["code"] == 4, empty
