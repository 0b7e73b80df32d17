"""tools/demo.sh must work: CI runs it like a person would (a system PATH, the node's python3), and reads
its verdicts."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import docs_examples

from beds import REPO, libcni, netns, runtime
from beds.topology import LAN_V4, NODE_V4


def test_demo_runs_the_main_job(route_plugin):
    # As docs/development.md says, with the node's python3; a source tree's bin/route needs this (the development)
    # interpreter, which the demo then names in the wrapper it puts into CNI_PATH.
    argv = [str(REPO / "tools" / "demo.sh")] if libcni.is_one_file_build(route_plugin) else \
        [sys.executable, str(REPO / "tools" / "demo.py")]
    proc = subprocess.run(argv, cwd=str(REPO), env=runtime.runtime_env(ROUTE_PLUGIN=str(route_plugin)),
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    report = f"rc={proc.returncode}\n--- stdout\n{out}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert "[FAIL]" not in out, report
    for heading in ("ADD", "node: ip route", "node: ip -d link show eno1.host", "connectivity", "CHECK",
                    "route doctor: the healthy node", "route doctor after a fault", "the plugin's replayable log",
                    "DEL", "node: ip route after DEL", "cleanup", "summary"):
        assert re.search(rf"^=== {re.escape(heading)}[: ]", out, re.M), f"no section {heading!r}\n{report}"
    pod_ip = re.search(r"^\[PASS\] ping host -> pod (\S+)$", out, re.M)
    assert pod_ip, report
    if libcni.is_one_file_build(route_plugin):  # installed as on a node
        assert "[PASS] route install" in out.splitlines(), report
    for line in ("[PASS] ADD", f"[PASS] ping pod -> host {NODE_V4}", f"[PASS] ping pod -> LAN host {LAN_V4}",
                 "[PASS] CHECK", "[PASS] route doctor: nothing fails",
                 f"[PASS] route doctor: the pod {pod_ip[1]} FAILs, with the command that fixes it",
                 "[PASS] route doctor after the fix: nothing fails",
                 f"[PASS] ping host -> pod {pod_ip[1]} after the fix",
                 "[PASS] DEL", f"[PASS] route {pod_ip[1]} is gone", "all steps PASSED"):
        assert line in out.splitlines(), f"missing {line!r}\n{report}"
    # the log it shows is a real route log, and the ADD block created the shim and the pod's route
    assert re.search(r"^# == route \S+ \| \S+ \| ADD \| pid \d+$", out, re.M), report
    assert f"ip route replace {pod_ip[1]}/32 dev eno1.host " in out, report
    # it cleaned up after itself: its namespaces and its temp dir are gone
    made = re.search(r"^\[PASS\] namespaces deleted: (.+)$", out, re.M)
    assert made, report
    names = made[1].split(", ")
    assert len(names) == 3 and netns.existing(names) == [], names
    tmp = re.search(r"^removed (/\S+)$", out, re.M)
    assert tmp and not os.path.exists(tmp[1]), report
    # README.md and docs/ show what this run shows (a source tree's bin/route is installed without `route install`)
    if libcni.is_one_file_build(route_plugin):
        assert docs_examples.stale_examples(out) == [], f"run tools/docs_examples.py\n{report}"
