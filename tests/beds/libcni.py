"""CNI plugins as a runtime runs them: the libcni driver (tests/cnidriver, built against Debian's libcni), a
CNI_PATH directory, a plugin's own argv, and the Cni object the e2e tests drive a chain with (the `cni` fixture),
with the checks of a driver call's answer.

`pod` arguments accept either a pod netns *name* or its /var/run/netns path.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Optional

from . import REPO
from .netns import netns_path
from .runtime import NODE_PATH, SetupError, runtime_env
from .topology import SHIM, Topology, ip_json

DRIVER_SRC = REPO / "tests" / "cnidriver"
ROUTE_PLUGIN = REPO / "bin" / "route"
REFERENCE_PLUGINS = Path(os.environ.get("CNI_REFERENCE_DIR", "/usr/lib/cni"))
CANARY_PLUGIN = REPO / "tests" / "cni-canary"


def build_cnidriver(out_dir, timeout: float = 600) -> str:
    """Build tests/cnidriver offline against Debian's libcni into *out_dir*; returns the binary's path.

    Raises SetupError (with go's output) if it cannot be built."""
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "cnidriver"
    env = dict(os.environ)
    env.update({
        "GOPATH": "/usr/share/gocode",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out_dir / "gocache"),
        "CGO_ENABLED": "0",
    })
    try:
        proc = subprocess.run([go, "build", "-o", str(binary), "."], cwd=str(DRIVER_SRC),
                              env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SetupError(f"cannot build tests/cnidriver: {e}") from None
    if proc.returncode != 0 or not binary.exists():
        raise SetupError(f"building tests/cnidriver failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return str(binary)


def make_cni_path(directory, route_plugin: Path | None = ROUTE_PLUGIN, canary: bool = True) -> str:
    """Create the CNI bin dir *directory*: macvlan and host-local (the reference plugins), the leak canary
    (tests/cni-canary) unless `canary` is False, and `route` for *route_plugin* unless it is None (the demo
    installs it with `route install`).

    The one-file build is linked as it is: a runtime runs it with the node's python3. A source tree's
    bin/route needs sh and jsonschema, which the node's python3 lacks, so it is started through a wrapper
    that names this (the development) interpreter explicitly: the fast inner loop, never a PATH leak."""
    d = Path(directory)
    d.mkdir(parents=True)
    for name in ("macvlan", "host-local"):
        src = REFERENCE_PLUGINS / name
        if not src.exists():
            raise SetupError(f"reference plugin {src} missing (containernetworking-plugins)")
        (d / name).symlink_to(src)
    if canary:
        (d / "canary").symlink_to(CANARY_PLUGIN)
    if route_plugin is not None:
        install_route(d / "route", Path(route_plugin))
    return str(d)


def is_one_file_build(plugin: Path) -> bool:
    return plugin.is_file() and zipfile.is_zipfile(plugin)


def install_route(target: Path, route_plugin: Path) -> None:
    if is_one_file_build(route_plugin) or not route_plugin.exists():
        target.symlink_to(route_plugin)  # a missing plugin dangles: callers then fail on ADD
        return
    target.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(route_plugin))} \"$@\"\n")
    target.chmod(0o755)


DriverResult = tuple[int, Optional[Any], str]


def run_driver(topo: Topology, driver: str, cni_path: str, cache_dir: str,
               cmd: str, conflist, pod: str, container_id: str,
               ifname: str = "eth0", timeout: float = 120) -> DriverResult:
    """`ip netns exec NODE cnidriver -cache-dir C -container-id ID -ifname I CMD LIST POD`.

    *pod* is a pod netns name or its /var/run/netns path.
    Returns (returncode, parsed stdout JSON or None, stderr)."""
    pod_path = pod if pod.startswith("/") else netns_path(pod)
    argv = [driver, "-cache-dir", str(cache_dir), "-container-id", container_id,
            "-ifname", ifname, cmd, str(conflist), pod_path]
    proc = topo.node_exec(argv, env=runtime_env(CNI_PATH=str(cni_path)), timeout=timeout)
    out = proc.stdout.strip()
    parsed = None
    if out:
        try:
            parsed = json.loads(out)
        except ValueError:
            parsed = None
    stderr = proc.stderr
    if out and parsed is None:
        stderr = f"[unparseable stdout: {out!r}]\n{stderr}"
    return proc.returncode, parsed, stderr


def plugin_argv(node: str, plugin, command: str, netns: str | None = None, container_id: str = "c1",
                ifname: str = "eth0", **extra_env: str) -> list[str]:
    """The plugin invoked as a runtime invokes it, in the node: `ip netns exec NODE env -i PATH=... CNI_... PLUGIN`.

    GC and STATUS get no pod variables. Without `netns`, the node's own namespace stands in for the pod's
    (the plugin enters it only with routeViaHost). `extra_env` adds to or overrides the environment."""
    env = runtime_env(CNI_COMMAND=command, CNI_PATH=str(REFERENCE_PLUGINS))
    if command not in ("GC", "STATUS", "VERSION"):
        env.update(CNI_CONTAINERID=container_id, CNI_IFNAME=ifname, CNI_NETNS=netns or netns_path(node))
    env.update(extra_env)
    return ["ip", "netns", "exec", node, "env", "-i", *[f"{k}={v}" for k, v in env.items()], str(plugin)]


def person_argv(node: str, plugin, *args: str) -> list[str]:
    """`route ARGS` run by a person on the node: in its namespace, with a runtime's PATH (so the node's python3
    runs a one-file build; a source tree's bin/route runs with this interpreter, as in install_route)."""
    python = [] if is_one_file_build(Path(plugin)) else [sys.executable]
    return ["ip", "netns", "exec", node, "env", "-i", f"PATH={NODE_PATH}", *python, str(plugin), *args]


def ok(res: DriverResult, what: str = "operation") -> Any:
    """Assert a driver call succeeded; its result."""
    rc, out, err = res
    assert rc == 0, f"{what} failed: rc={rc} stdout={out}\nstderr:\n{err}"
    return out


def failed(res: DriverResult, what: str = "operation") -> dict[str, Any]:
    """Assert the driver reported a CNI error with a non-zero code; the error."""
    rc, out, err = res
    assert rc != 0, f"{what} unexpectedly succeeded: {out}\nstderr:\n{err}"
    assert isinstance(out, dict) and "code" in out, \
        f"{what}: no CNI error JSON on stdout ({out!r})\nstderr:\n{err}"
    assert out["code"] != 0, \
        f"{what} failed without a proper CNI error code (crash?): {out}\nstderr:\n{err}"
    return out


def add_pod(cni: Cni, conf, container_id: str | None = None) -> tuple[str, Any]:
    """A new pod namespace, ADDed through the chain `conf`; (pod name, result)."""
    pod, path = cni.topo.add_pod()
    return pod, ok(cni.add(conf, path, container_id), f"ADD {pod}")


def pod_ips(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """Bare addresses of `ifname` (with a sandbox) from a CNI result of any
    version (0.3.x/0.4.0/1.0.0 share the interfaces/ips layout)."""
    ifaces = result.get("interfaces") or []
    idx = {i for i, itf in enumerate(ifaces)
           if itf.get("name") == ifname and itf.get("sandbox")}
    ips = []
    for ip in result.get("ips") or []:
        if ip.get("interface") in idx:
            ips.append(ip["address"].split("/")[0])
    return ips


class Cni:
    def __init__(self, topo: Topology, driver: str, cni_path: str, cache_dir: Path):
        self.topo = topo
        self.driver = driver
        self.cni_path = cni_path
        self.cache_dir = cache_dir

    @staticmethod
    def default_container_id(pod: str) -> str:
        return "ctr-" + os.path.basename(pod)

    def run(self, cmd: str, conflist, pod: str, container_id: str | None = None,
            ifname: str = "eth0") -> DriverResult:
        cid = container_id or self.default_container_id(pod)
        return run_driver(self.topo, self.driver, self.cni_path, str(self.cache_dir),
                          cmd, conflist, pod, cid, ifname)

    def add(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("add", conflist, pod, container_id, ifname)

    def check(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("check", conflist, pod, container_id, ifname)

    def delete(self, conflist, pod, container_id=None, ifname="eth0") -> DriverResult:
        return self.run("del", conflist, pod, container_id, ifname)

    # ---- host (node netns) state, read back with `ip -json` ----
    def shim_link(self, dev: str = SHIM) -> dict[str, Any] | None:
        links = ip_json(self.topo, ["-d", "link", "show", "dev", dev])
        return links[0] if links else None

    def node_links(self) -> list[dict[str, Any]]:
        return ip_json(self.topo, ["-d", "link", "show"]) or []

    def node_routes(self) -> list[dict[str, Any]]:
        routes = []
        for fam in ("-4", "-6"):
            routes += ip_json(self.topo, [fam, "route", "show", "table", "main"]) or []
        return routes

    def shim_routes(self, dev: str = SHIM) -> list[dict[str, Any]]:
        return [r for r in self.node_routes() if r.get("dev") == dev]

    def ping_from_node(self, ip: str) -> bool:
        return self.topo.node_exec(["ping", "-c", "1", "-W", "2", ip]).returncode == 0

    def ping_from_pod(self, pod: str, ip: str) -> bool:
        name = os.path.basename(pod)
        return self.topo.pod_exec(name, ["ping", "-c", "1", "-W", "2", ip]).returncode == 0
