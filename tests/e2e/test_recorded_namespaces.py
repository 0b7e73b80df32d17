"""doctor never enters a recorded pod namespace path that is no network namespace now: the pod is gone and a
FIFO (which a plain open would wait on forever) or a plain file took its path. doctor says so and finishes; a
hang is failed by the subprocess's timeout, not timed."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from beds.libcni import add_pod, person_argv
from beds.netns import netns_path


@pytest.mark.parametrize("kind", ["fifo", "plain file"])
def test_doctor_never_enters_a_recorded_namespace_path_that_is_now_a_fifo_or_a_file(topo, cni, chain, route_plugin,
                                                                                  tmp_path, kind):
    conf = chain()
    pod, _ = add_pod(cni, conf)
    state_dir = json.loads(conf.read_text())["plugins"][1]["stateDir"]
    path = netns_path(pod)
    [record] = Path(state_dir).glob("networks/*/attachments/*.json")
    assert json.loads(record.read_text())["netns"] == path  # what doctor would enter
    topo.del_pod(pod)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "w") as f:
            f.write("not a namespace\n")
    try:
        proc = subprocess.run(person_argv(topo.node, route_plugin, "doctor", "--json", "--conflist", str(conf),
                                                "--state-dir", str(tmp_path / "none")),
                              capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(path)
    assert proc.stderr == "" and proc.returncode in (0, 1), proc
    checks = {c["subject"]: c for c in json.loads(proc.stdout)["checks"]}
    [replies] = (c for subject, c in checks.items() if subject.endswith(" reply paths"))
    assert replies["found"] == f"not read: {path} is no network namespace now (or nsenter is missing)", replies
