"""A huge regular file where a config, a record or a log is read (a sparse 4 GiB one) is refused without being
read whole, by the plugin, doctor and replay: each says it is larger than its bound, and none runs out of memory.
The processes run with 1 GiB of address space, so reading such a file whole fails at once (MemoryError) instead
of filling the machine's memory."""
import json
import resource
import subprocess
from pathlib import Path

from beds.libcni import add_pod, person_argv, plugin_argv

HUGE = 4 << 30


def huge(path):
    with open(path, "wb") as f:
        f.truncate(HUGE)  # sparse: no block is written
    return path


def bounded():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def run(argv, stdin=None, text=None):
    proc = subprocess.run(argv, stdin=stdin, input=text, capture_output=True, text=True, timeout=120,
                          preexec_fn=bounded)
    assert "MemoryError" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr, proc
    return proc


def test_the_plugin_refuses_a_huge_config_on_stdin(topo, route_plugin, tmp_path):
    with open(huge(tmp_path / "config"), "rb") as stdin:
        proc = run(plugin_argv(topo.node, route_plugin, "ADD"), stdin)
    answer = json.loads(proc.stdout)
    assert proc.returncode == 1 and answer["code"] == 6, proc
    assert answer["details"] == "stdin is larger than 1048576 bytes", answer


def test_doctor_skips_a_huge_record_and_the_plugins_del_drops_it(topo, cni, chain, route_plugin, tmp_path):
    conf = chain()
    pod, _ = add_pod(cni, conf)
    route = json.loads(conf.read_text())["plugins"][1]
    [record] = Path(route["stateDir"]).glob("networks/*/attachments/*.json")
    huge(record)
    proc = run(person_argv(topo.node, route_plugin, "doctor", "--json", "--conflist", str(conf),
                                 "--state-dir", str(tmp_path / "none")))
    [check] = (c for c in json.loads(proc.stdout)["checks"] if c["subject"].startswith("record "))
    assert check["verdict"] == "WARN" and check["found"].endswith(f"{record}: larger than 1048576 bytes"), check
    conf = {"cniVersion": "1.1.0", "name": "rtt-route", **route}
    proc = run(plugin_argv(topo.node, route_plugin, "DEL", container_id=cni.default_container_id(pod)),
               text=json.dumps(conf))
    assert proc.returncode == 0 and not record.exists(), proc  # DEL never fails, and drops what it cannot read


def test_doctor_skips_a_huge_conflist(topo, route_plugin, tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    path = huge(conf_dir / "10-route.conflist")
    proc = run(person_argv(topo.node, route_plugin, "doctor", "--json", "--conf-dir", str(conf_dir),
                                 "--state-dir", str(tmp_path / "none")))
    [check] = (c for c in json.loads(proc.stdout)["checks"] if c["subject"] == f"config {path}")
    assert check["found"] == "skipped, cannot be read as JSON: larger than 1048576 bytes", check


def test_replay_refuses_a_huge_log(topo, route_plugin, tmp_path):
    log = huge(tmp_path / "route.log")
    proc = run(person_argv(topo.node, route_plugin, "replay", "--dry-run", str(log)))
    assert proc.returncode == 2, proc
    assert proc.stderr == f"route replay: refusing {log}: larger than {256 << 20} bytes\n", proc
