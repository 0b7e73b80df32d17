#!/usr/bin/env python3
"""The main job, shown end to end on throw-away network namespaces (needs root).

Replays the seed's functional test with what a node runs: `route install` puts the one-file build
(dist/route, made by tools/setup.sh) into the demo's CNI bin dir, and the real libcni (tests/cnidriver),
started with a runtime's environment (a system PATH, the node's python3), runs the chain of
net.d/00-default.conflist -- macvlan + host-local, then `route` -- for one pod on a node whose
eno1 sits on a LAN with another host.  Prints what a person would look at (ADD result, the
node's routes, the eno1.host shim, pings, CHECK, `route doctor` on the healthy node and after a fault,
the replayable log, DEL) and exits non-zero if any step fails.  Nothing outside the rtt-* namespaces
and a temp dir is touched, and both are removed at the end, also on failure or Ctrl-C.

    tools/demo.sh            (or: sudo python3 tools/demo.py)
    ROUTE_PLUGIN=/path/to/route tools/demo.sh   to try another build of the plugin (a source tree's
                                                bin/route is started with this python3 instead)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from beds import libcni, netns, runtime, topology  # noqa: E402
from beds.topology import SHIM  # noqa: E402

SEED = REPO / "net.d" / "00-default.conflist"

IFNAME = "eth0"


class Demo:
    def __init__(self) -> None:
        self.failures: list[str] = []

    # -- output ---------------------------------------------------------------
    @staticmethod
    def section(title: str) -> None:
        print(f"\n=== {title} " + "=" * max(3, 72 - len(title)), flush=True)

    @staticmethod
    def show(argv: list[str], text: str) -> None:
        print("$ " + " ".join(argv), flush=True)
        body = text.rstrip("\n")
        if body:
            print(body, flush=True)

    def step(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"[{'PASS' if ok else 'FAIL'}] {name}", flush=True)
        if not ok:
            self.failures.append(name)
            for line in detail.strip().splitlines():
                print("       " + line, flush=True)
        return ok

    # -- commands in the node / pod namespaces ----------------------------------
    def node_show(self, topo: topology.Topology, argv: list[str]) -> str:
        proc = topo.node_exec(argv)
        self.show(["(node)"] + argv, proc.stdout + proc.stderr)
        return proc.stdout

    def ping(self, topo: topology.Topology, where: str, name: str, ip: str) -> bool:
        argv = ["ping", "-c", "1", "-W", "2", ip]
        proc = topo.node_exec(argv) if where == "node" else topo.pod_exec(where, argv)
        return self.step(name, proc.returncode == 0, proc.stdout + proc.stderr)


def write_chain(directory: Path) -> tuple[Path, Path]:
    """The seed conflist with host-local's dataDir and route's stateDir/logFile moved into *directory*."""
    conf = json.loads(SEED.read_text())
    log_file = directory / "route.log"
    for plugin in conf["plugins"]:
        if plugin.get("type") == "macvlan" and plugin.get("ipam", {}).get("type") == "host-local":
            plugin["ipam"]["dataDir"] = str(directory / "ipam")
        if plugin.get("type") == "route":
            plugin["stateDir"] = str(directory / "route-state")
            plugin["logFile"] = str(log_file)
    netd = directory / "net.d"
    netd.mkdir()
    path = netd / SEED.name
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path, log_file


def pod_ip(result) -> str | None:
    if not isinstance(result, dict):
        return None
    sandboxed = {i for i, itf in enumerate(result.get("interfaces") or [])
                 if itf.get("name") == IFNAME and itf.get("sandbox")}
    for ip in result.get("ips") or []:
        if ip.get("interface") in sandboxed and ":" not in ip.get("address", ":"):
            return ip["address"].split("/")[0]
    return None


def run(demo: Demo, tmp: Path, route_plugin: Path) -> None:
    demo.section("setup: build the libcni driver, CNI_PATH, the chain")
    try:
        driver = libcni.build_cnidriver(tmp / "driver")
        cni_path = libcni.make_cni_path(tmp / "cni-bin", route_plugin=None, canary=False)
    except runtime.SetupError as e:
        demo.step("setup", False, str(e))
        return
    if not install(demo, route_plugin, Path(cni_path)):
        return
    print(f"driver:   {driver}")
    print(f"CNI_PATH: {cni_path}")
    for entry in sorted(Path(cni_path).iterdir()):
        print(f"          {entry.name}" + (f" -> {os.readlink(entry)}" if entry.is_symlink() else ""))
    conflist, log_file = write_chain(tmp)
    print(f"conflist: {conflist} (from {SEED.relative_to(REPO)})")
    print(conflist.read_text().rstrip())
    cache = tmp / "cni-cache"
    cache.mkdir()

    topo = topology.Topology()
    try:
        exercise(demo, topo, driver, cni_path, str(cache), conflist, log_file, route_plugin)
    finally:
        demo.section("cleanup")
        made = topo.namespaces()
        topo.close()  # raises if a namespace could not be deleted
        demo.step("namespaces deleted: " + ", ".join(made), netns.existing(made) == [])


def install(demo: Demo, route_plugin: Path, bin_dir: Path) -> bool:
    """Put the plugin into the CNI bin dir as on a node: `route install`, run by the node's python3."""
    if not libcni.is_one_file_build(route_plugin):
        libcni.install_route(bin_dir / "route", route_plugin)
        print(f"{route_plugin} is a source tree's launcher: the runtime starts it with {sys.executable}")
        return True
    argv = [str(route_plugin), "install", "--bin-dir", str(bin_dir)]
    proc = runtime.run(argv, check=False, env=runtime.runtime_env())
    demo.show(argv, proc.stdout + proc.stderr)
    return demo.step("route install", proc.returncode == 0 and (bin_dir / "route").is_file(),
                     proc.stdout + proc.stderr)


def exercise(demo: Demo, topo: topology.Topology, driver: str, cni_path: str, cache: str,
             conflist: Path, log_file: Path, route_plugin: Path) -> None:
    pod, pod_path = topo.add_pod()
    container = "demo-" + uuid.uuid4().hex[:12]
    print(f"node netns {topo.node}: {topology.MASTER} {topology.NODE_V4}/{topology.PREFIX_V4}")
    print(f"lan netns  {topo.lan}: {topology.LAN_IF} {topology.LAN_V4}/{topology.PREFIX_V4}")
    print(f"pod netns  {pod} (container {container})")

    def cni(cmd: str):
        return libcni.run_driver(topo, driver, cni_path, cache, cmd, conflist, pod_path, container, IFNAME)

    demo.section("ADD: the result libcni hands back to the runtime")
    rc, result, err = cni("add")
    print(json.dumps(result, indent=2) if result is not None else "(no result)")
    ip = pod_ip(result) if rc == 0 else None
    if not demo.step("ADD", rc == 0 and ip is not None, err):
        return

    demo.section("node: ip route")
    routes = demo.node_show(topo, ["ip", "route"])
    demo.step(f"route {ip} dev {SHIM} on the node", any(
        line.split()[:3] == [ip, "dev", SHIM] for line in routes.splitlines()), routes)

    demo.section(f"node: ip -d link show {SHIM}")
    link = demo.node_show(topo, ["ip", "-d", "link", "show", SHIM])
    demo.step(f"{SHIM} is a macvlan in bridge mode on {topology.MASTER}",
              "macvlan mode bridge" in link and f"@{topology.MASTER}" in link, link)

    demo.section("connectivity")
    demo.ping(topo, "node", f"ping host -> pod {ip}", ip)
    demo.ping(topo, pod, f"ping pod -> host {topology.NODE_V4}", topology.NODE_V4)
    demo.ping(topo, pod, f"ping pod -> LAN host {topology.LAN_V4}", topology.LAN_V4)

    demo.section("CHECK")
    rc, out, err = cni("check")
    demo.step("CHECK", rc == 0, f"{out}\n{err}")

    doctor_steps(demo, topo, route_plugin, conflist, ip)

    demo.section(f"the plugin's replayable log: {log_file}")
    try:
        print(log_file.read_text().rstrip())
    except OSError as e:
        demo.step("log file written", False, str(e))

    demo.section("DEL")
    rc, out, err = cni("del")
    demo.step("DEL", rc == 0, f"{out}\n{err}")

    demo.section("node: ip route after DEL")
    routes = demo.node_show(topo, ["ip", "route"])
    demo.step(f"route {ip} is gone", not any(line.split()[:1] == [ip] for line in routes.splitlines()), routes)


def doctor_steps(demo: Demo, topo: topology.Topology, route_plugin: Path, conflist: Path, ip: str) -> None:
    """`route doctor` as an operator runs it on the node: healthy; then the pod's route deleted, which it names
    with its fix; the fix run; healthy again."""
    state_dir = json.loads(conflist.read_text())["plugins"][-1]["stateDir"]
    args = ["doctor", "--conf-dir", str(conflist.parent), "--state-dir", state_dir]

    def doctor(*extra: str, show: bool = True):
        argv = libcni.person_argv(topo.node, route_plugin, *args, *extra)
        proc = runtime.run(argv, check=False)
        if show:
            demo.show(["(node)", "route", *args, *extra], proc.stdout + proc.stderr)
        return proc

    demo.section("route doctor: the healthy node")
    healthy = doctor()
    demo.step("route doctor: nothing fails", healthy.returncode == 0, healthy.stdout + healthy.stderr)
    demo.section(f"route doctor after a fault: (node) ip route del {ip}/32 dev {SHIM}")
    topo.node_exec(["ip", "route", "del", f"{ip}/32", "dev", SHIM])
    broken = doctor()
    report = json.loads(doctor("--json", show=False).stdout or "{}")
    fixes = [line for check in report.get("checks", []) if check["verdict"] == "FAIL" for line in check["fix"]]
    demo.step(f"route doctor: the pod {ip} FAILs, with the command that fixes it",
              broken.returncode == 1 and f"ip route replace {ip}/32 dev {SHIM} scope link proto 201" in fixes,
              broken.stdout + broken.stderr)
    for line in fixes:
        if not line.startswith("#"):
            demo.show(["(node)", line], topo.node_exec(["sh", "-c", line]).stderr)
    fixed = doctor(show=False)
    demo.step("route doctor after the fix: nothing fails", fixed.returncode == 0, fixed.stdout + fixed.stderr)
    demo.ping(topo, "node", f"ping host -> pod {ip} after the fix", ip)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    route_plugin = Path(os.environ.get("ROUTE_PLUGIN") or (REPO / "dist" / "route")).resolve()
    if not route_plugin.exists():
        print(f"demo: {route_plugin} is missing; run tools/setup.sh first (it builds dist/route)", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the namespaces and the temp dir still go away.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    demo = Demo()
    tmp = Path(tempfile.mkdtemp(prefix="route-demo-"))
    try:
        run(demo, tmp, route_plugin)
    except Exception as e:  # still clean up and say FAIL, never a silent traceback-less exit
        demo.step(f"demo crashed: {type(e).__name__}", False, str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"removed {tmp}")
    demo.section("summary")
    if demo.failures:
        print(f"FAILED: {len(demo.failures)} step(s): " + "; ".join(demo.failures))
        return 1
    print("all steps PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
