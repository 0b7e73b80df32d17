"""The watcher can be watched, for real: the DaemonSet's watcher command exactly as `kubectl kustomize deploy`
renders it, run in a node namespace with two pods of the real libcni chain (its mounts mapped to the node's
state dir and /proc/sys, `route` found on PATH as in the image), serves its Prometheus metrics on the port the
manifest declares, and the manifest's own probe commands pass while it is healthy; the liveness probe fails
while a pass hangs on an `ip` that does not return; a repair moves its counter; `route status` shows the same.

The node's python3 serves the metrics: it has prometheus-client from Debian's python3-prometheus-client
(tools/setup.sh), as an operator's node without the DaemonSet would.
"""
import json
import os
import shutil
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from beds import manifests, runtime, watch
from beds.libcni import add_pod, pod_ips
from beds.topology import MASTER, NODE_V4, SHIM

NETWORK = "rtt-route"  # the chain fixture's network name
STALL = "2"  # seconds: the liveness probe's --stall, short for the test (the manifest gives a slow node more)


class Bed:
    """The node, two pods, and the DaemonSet's watcher container as commands to run in the node namespace."""

    def __init__(self, topo, cni, chain, cni_path, tmp_path):
        self.topo, self.tmp = topo, tmp_path
        self.state_dir = tmp_path / "route-state"
        conf = chain()
        self.ips = [pod_ips(add_pod(cni, conf)[1])[0] for _ in range(2)]
        spec = manifests.daemonset()["spec"]["template"]["spec"]
        [self.container] = spec["containers"]
        command = self.container["command"]
        host_path = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
        mounts = {m["mountPath"]: host_path[m["name"]] for m in self.container["volumeMounts"]}
        state_dir, proc_sys = (command[command.index(option) + 1] for option in ("--state-dir", "--proc-sys"))
        assert (mounts[state_dir], mounts[proc_sys + "/net"]) == ("/run/cni-route", "/proc/sys/net"), mounts
        self.mapped = {state_dir: str(self.state_dir), proc_sys: "/proc/sys"}
        self.path = f"{cni_path}:{runtime.IMAGE_PATH}"  # `route` and the image's python3 on PATH, as in the image

    def command(self, argv):
        return [self.mapped.get(word, word) for word in argv]

    def watcher(self, path=None):
        w = watch.Watcher(self.topo.node, None, None, command=self.command(self.container["command"]),
                          path=path or self.path, stderr_path=self.tmp / f"watcher-{time.monotonic_ns()}.err")
        assert w.wait_for("watching"), w.output()
        return w

    def probe(self, kind, **replace):
        """The manifest's probe `kind` (livenessProbe, readinessProbe) run in the node: (exit status, output)."""
        argv = self.command(self.container[kind]["exec"]["command"])
        for option, value in replace.items():
            argv[argv.index(option) + 1] = value
        return self.run(argv)

    def run(self, argv, path=None):
        proc = self.topo.node_exec(["env", "-i", f"PATH={path or self.path}", *argv], check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def metrics(self):
        """{(name, labels as a sorted tuple): value} scraped from the port the manifest declares."""
        [port] = [p["containerPort"] for p in self.container["ports"] if p["name"] == "metrics"]
        code, text = self.run(["python3", "-c", "import sys, urllib.request; sys.stdout.write(urllib.request."
                               f"urlopen('http://{NODE_V4}:{port}/metrics', timeout=10).read().decode())"])
        assert code == 0, text
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def bed(topo, cni, chain, cni_path, tmp_path):
    return Bed(topo, cni, chain, cni_path, tmp_path)


def until(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_manifests_watcher_serves_metrics_passes_its_probes_and_counts_its_repairs(bed):
    with bed.watcher() as watcher:
        code, out = bed.probe("livenessProbe")
        assert code == 0 and out.startswith("live: "), out
        code, out = bed.probe("readinessProbe")
        assert code == 0 and out.startswith("ready: 1 shim can take pods"), out
        before = bed.metrics()
        assert before[("route_cni_attachments", (("network", NETWORK),))] == 2, before
        assert before[("route_cni_reconcile_passes_total", (("result", "in_shape"),))] >= 1, before
        assert ("route_cni_reconcile_last_pass_timestamp_seconds", ()) in before, before
        assert before[("route_cni_watcher_monitor_up", ())] == 1, before
        node_routes = ("route_cni_reconcile_repairs_total", (("kind", "node_route"),))
        assert before[node_routes] == 0, before

        bed.topo.node_exec(["ip", "route", "flush", "proto", "201"], check=True)
        assert watch.wait_in_shape(bed.topo.node, bed.ips) is not None, watch.shape_problems(bed.topo.node, bed.ips)
        assert until(lambda: bed.metrics()[node_routes] == 2), bed.metrics()  # one route per pod
        code, text = bed.run(["route", "status", "--state-dir", str(bed.state_dir)])
        assert code == 0 and "node_route 2" in text and f"attachments at the last pass: {NETWORK} 2" in text, text
        code, text = bed.run(["route", "status", "--json", "--state-dir", str(bed.state_dir)])
        doc = json.loads(text)
        assert code == 0 and doc["live"] and doc["repairs"]["node_route"] == 2, doc
        assert watcher.stop()[0] == 0, watcher.output()


def test_the_readiness_probe_fails_while_the_master_is_down(bed):
    bed.topo.node_exec(["ip", "link", "set", "dev", MASTER, "down"], check=True)
    code, out = bed.probe("readinessProbe")
    assert code == 1 and out.startswith(f"not ready: {NETWORK} on {SHIM}: master {MASTER} is down"), out
    bed.topo.node_exec(["ip", "link", "set", "dev", MASTER, "up"], check=True)
    assert bed.probe("readinessProbe")[0] == 0


def test_the_liveness_probe_fails_while_a_pass_hangs_on_an_ip_that_does_not_return(bed, tmp_path):
    """`ip` is a wrapper that, while the file `hang` exists, sleeps instead of running ip, until the watcher's
    --ip-timeout (10 s) kills it; the ip monitor, started before, is the real one and wakes the watcher."""
    hang, fake = tmp_path / "hang", tmp_path / "fake-bin"
    fake.mkdir()
    real = shutil.which("ip", path=runtime.NODE_PATH)
    (fake / "ip").write_text(f'#!/bin/sh\ncase " $* " in *" monitor "*) ;; *) [ -e {hang} ] && exec sleep 3600 ;; '
                             f'esac\nexec {real} "$@"\n')
    os.chmod(fake / "ip", 0o755)
    with bed.watcher(path=f"{fake}:{bed.path}") as watcher:
        assert bed.probe("livenessProbe", **{"--stall": STALL})[0] == 0
        hang.touch()
        bed.topo.node_exec(["ip", "route", "add", "10.9.0.0/16", "dev", MASTER], check=True)  # an event: a pass
        assert until(lambda: bed.probe("livenessProbe", **{"--stall": STALL})[0] == 1, 9.0), watcher.output()
        code, out = bed.probe("livenessProbe", **{"--stall": STALL})
        assert out.startswith("not live: a pass has run for "), out
        hang.unlink()  # the hung ip is killed at its timeout, the pass ends, the loop goes on
        assert until(lambda: bed.probe("livenessProbe", **{"--stall": STALL})[0] == 0, 30.0), watcher.output()
        assert watcher.stop(20.0)[0] == 0, watcher.output()
    assert "timed out after 10.0 s" in watcher.output()
