"""doctor reads a conflist that is a symlink to a regular file, as a ConfigMap mounted into a conf dir is:
NAME -> ..data/NAME, ..data -> ..TIMESTAMP, the file inside that."""
import json
import os

from helpers import call, netconf, prev_result, run_person
from test_doctor_checks import node_programs


def test_doctor_reads_a_conflist_mounted_from_a_config_map(monkeypatch, host, tmp_path):
    node_programs(host)
    host.in_node_namespace = False  # (network managers are not asked)
    host.pod("/var/run/netns/pod1", addresses=["192.168.1.2/16"])
    conf = netconf(tmp_path / "state", prev_result("192.168.1.2/16"))
    assert call(monkeypatch, host, "ADD", conf)[0] == 0
    conf_dir = tmp_path / "net.d"
    (conf_dir / "..2026_12_07_19_00_00.000000001").mkdir(parents=True)
    (conf_dir / "..2026_12_07_19_00_00.000000001" / "10-route.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "default", "plugins": [{"type": "macvlan"}, conf]}))
    os.symlink("..2026_12_07_19_00_00.000000001", conf_dir / "..data")
    os.symlink("..data/10-route.conflist", conf_dir / "10-route.conflist")
    code, out, err = run_person(host, "doctor", "--json", "--conf-dir", conf_dir, "--state-dir", tmp_path / "none")
    report = json.loads(out)
    assert code == 0 and err == "", (out, err)
    assert [s["title"] for s in report["sections"]][1] == \
        f"network default: {conf_dir}/10-route.conflist; state {tmp_path}/state; 1 attachment"
    checks = {c["subject"]: c for c in report["checks"] if c["scope"] == "network default"}
    assert checks["config"]["found"].startswith("master eno1, bridge (derived)"), checks
    assert checks["pod 192.168.1.2"]["verdict"] == "OK", checks
