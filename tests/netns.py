"""Throw-away network-namespace topologies for the `route` plugin tests.

Stdlib only; every external command is run with an argv list (never a shell).

Every namespace created here is named ``rtt-<kind>-<pid>-<random>`` so that
:func:`sweep_leftovers` can find and delete anything a crashed run left
behind -- and only that: namespaces of a process that is still running (another
pytest session, the demo) are left alone, so concurrent runs do not break each
other.  Nothing in here touches the machine's own (init netns) interfaces,
routes or sysctls: links are created *inside* the throw-away namespaces
(``ip -n NS link add ...``) and all commands run via ``ip -n`` /
``ip netns exec``.

Layout built by :class:`Topology`::

    +-------------------- node netns ------+        +---- lan netns ------+
    | lo (up)                               |        | lo (up)             |
    | eno1  192.168.0.5/16, fd00::5/64  ----+--veth--+ eth0 192.168.0.7/16 |
    |                                       |        |      fd00::7/64     |
    +---------------------------------------+        +---------------------+

    pod netns (add_pod): empty apart from lo (down) -- the CNI chain fills it.
    uplink netns (add_uplink): a second NIC of the node, e.g. where the node's own address lives.

Shared by the e2e tests (tests/e2e/conftest.py) and the demo (tools/demo.py):
:func:`build_cnidriver` builds the libcni driver in tests/cnidriver,
:func:`make_cni_path` fills a CNI_PATH directory, :func:`run_driver` runs one
libcni call from inside the node netns.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

PREFIX = "rtt-"
NETNS_DIR = "/var/run/netns"

NODE_IF = "eno1"
LAN_IF = "eth0"
NODE_V4 = "192.168.0.5"
NODE_V6 = "fd00::5"
LAN_V4 = "192.168.0.7"
LAN_V6 = "fd00::7"
PREFIX_V4 = 16
PREFIX_V6 = 64

REPO = Path(__file__).resolve().parents[1]
DRIVER_SRC = REPO / "tests" / "cnidriver"
ROUTE_PLUGIN = REPO / "bin" / "route"
REFERENCE_PLUGINS = Path(os.environ.get("CNI_REFERENCE_DIR", "/usr/lib/cni"))
CANARY_PLUGIN = REPO / "tests" / "cni-canary"

# What a container runtime or the kubelet hands a plugin: a system PATH and the CNI_* variables. Plugins here
# are always started with an environment built from this, never from the test's own (tox puts its virtualenv
# first on PATH, and a plugin that inherited it would find packages that no node has).
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The node's python3 is the one NODE_PATH finds, unless ROUTE_NODE_PYTHON names another interpreter: CI runs the
# e2e suite again with the oldest and the newest python3 the plugin supports (tools/test.sh, tools/pythons.py).
NODE_PYTHON = os.environ.get("ROUTE_NODE_PYTHON")


def _node_python_dir(python: str) -> str:
    """A directory holding only `python3`, a link to *python*, to go first on the node's PATH (the interpreter's own
    bin/ may hold another python3, as /usr/bin does). Named after the interpreter, so sessions share it."""
    python = os.path.realpath(python)
    digest = hashlib.sha256(python.encode()).hexdigest()[:12]
    directory = os.path.join(tempfile.gettempdir(), f"route-node-python-{digest}")
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "python3")
    if not os.path.islink(link) or os.readlink(link) != python:
        temporary = f"{link}.{os.getpid()}"
        os.symlink(python, temporary)
        os.replace(temporary, link)
    return directory


if NODE_PYTHON:
    NODE_PATH = f"{_node_python_dir(NODE_PYTHON)}:{NODE_PATH}"


def runtime_env(**variables: str) -> dict[str, str]:
    """A plugin's whole environment, as a runtime builds it: NODE_PATH plus *variables*."""
    return {"PATH": NODE_PATH, **variables}


class CommandError(RuntimeError):
    """A command run with check=True failed; carries the CompletedProcess."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        out = (proc.stdout or "").strip()
        err = (proc.stderr or "").strip()
        super().__init__(f"command {proc.args!r} failed with rc={proc.returncode}\nstdout: {out}\nstderr: {err}")


def run(argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    """subprocess.run in text mode with captured output (unless overridden)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    proc = subprocess.run(list(argv), **kw)
    if check and proc.returncode != 0:
        raise CommandError(proc)
    return proc


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def new_name(kind: str) -> str:
    """A fresh namespace name: rtt-<kind>-<pid of this process>-<8 hex chars>."""
    return f"{PREFIX}{kind}-{os.getpid()}-{secrets.token_hex(4)}"


_OWNED = re.compile(re.escape(PREFIX) + r".+-(\d+)-[0-9a-f]{8}\Z")


def owner_pid(name: str) -> int | None:
    """The pid that made namespace *name* (see new_name), or None for a name of another form."""
    m = _OWNED.match(name)
    return int(m[1]) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_netns() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    proc = run(["ip", "netns", "list"], check=False)
    names = []
    for line in proc.stdout.splitlines():
        # lines look like "name" or "name (id: 3)"
        line = line.strip()
        if line:
            names.append(line.split()[0])
    if os.path.isdir(NETNS_DIR):  # also catch half-created mount points
        for entry in os.listdir(NETNS_DIR):
            if entry not in names:
                names.append(entry)
    return names


def create_netns(name: str) -> str:
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to create a netns not named {PREFIX}*: {name!r}")
    run(["ip", "netns", "add", name])
    return netns_path(name)


def delete_netns(name: str) -> bool:
    """Delete a namespace made by us. Returns True if it is gone afterwards."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to delete a netns not named {PREFIX}*: {name!r}")
    run(["ip", "netns", "delete", name], check=False)
    path = netns_path(name)
    if os.path.lexists(path):
        # `ip netns delete` failed half-way (e.g. already unmounted); tidy up.
        run(["umount", "-l", path], check=False)
        try:
            os.unlink(path)
        except OSError:
            pass
    return not os.path.lexists(path)


def sweep_leftovers(prefix: str = PREFIX) -> list[str]:
    """Delete the ``rtt-*`` network namespaces left behind; returns the names removed.

    Left behind means: made by this process, by a process that no longer exists, or named in
    another form (an older run).  Those of another live process are its business."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"sweep prefix must start with {PREFIX!r}")
    removed = []
    me = os.getpid()
    for name in list_netns():
        if not name.startswith(prefix):
            continue
        owner = owner_pid(name)
        if owner is not None and owner != me and _alive(owner):
            continue
        delete_netns(name)
        removed.append(name)
    return removed


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


def ns_exec(name: str, argv: Sequence[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run argv inside namespace *name* via ``ip netns exec``."""
    return run(["ip", "netns", "exec", name] + list(argv), check=check, **kw)


class Topology:
    """node + lan namespaces joined by a veth pair, plus on-demand pod namespaces.

    Use as a context manager; :meth:`close` removes every namespace this
    object created, even when building failed half-way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: list[str] = []  # every netns we made, in order
        self.pods: list[str] = []
        self.node = new_name("node")
        self.lan = new_name("lan")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- construction -------------------------------------------------------
    def _add_ns(self, name: str) -> str:
        with self._lock:
            self._created.append(name)  # record first: close() must see it
        return create_netns(name)

    def _build(self) -> None:
        self._add_ns(self.node)
        self._add_ns(self.lan)
        node, lan = self.node, self.lan
        # Create the veth pair inside the node netns and push the peer
        # straight into the lan netns: nothing ever appears in the root netns.
        run(["ip", "-n", node, "link", "add", NODE_IF, "type", "veth",
             "peer", "name", LAN_IF, "netns", lan])
        for ns, dev, v4, v6 in ((node, NODE_IF, NODE_V4, NODE_V6),
                                (lan, LAN_IF, LAN_V4, LAN_V6)):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{v4}/{PREFIX_V4}", "dev", dev])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/{PREFIX_V6}",
                 "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self._wait_ready(((node, NODE_IF), (lan, LAN_IF)))

    @staticmethod
    def _wait_ready(links, timeout: float = 10.0) -> None:
        """Return once both ends have carrier and their test addresses are usable: a neighbour solicitation
        sent before the peer is up is dropped, and the retry comes a second later, which made the first IPv6
        ping of a busy test run (ping -W 2) fail now and then. Link-local addresses may still be in DAD:
        the test addresses do not need them."""
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for ns, dev in links:
                link = json.loads(run(["ip", "-n", ns, "-json", "addr", "show", "dev", dev]).stdout)[0]
                tentative = [a for a in link.get("addr_info", []) if a.get("tentative") and a.get("scope") == "global"]
                if "LOWER_UP" not in link["flags"] or tentative:
                    pending.append(f"{ns}/{dev}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"links not ready after {timeout} s: {', '.join(pending)}")
            time.sleep(0.05)

    # -- exec helpers -------------------------------------------------------
    def node_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.node, argv, **kw)

    def lan_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.lan, argv, **kw)

    def pod_exec(self, pod: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        if pod not in self.pods:
            raise ValueError(f"unknown pod netns {pod!r}")
        return ns_exec(pod, argv, **kw)

    # -- a second NIC ---------------------------------------------------------
    def add_uplink(self, node_if: str, node_addresses: Sequence[str], peer_addresses: Sequence[str]) -> str:
        """Another namespace joined to the node by a veth pair: `node_if` in the node with `node_addresses`,
        eth0 in the new namespace with `peer_addresses` (CIDRs of either family), both up. Returns the new
        namespace's name; it goes with the topology."""
        name = new_name("uplink")
        self._add_ns(name)
        run(["ip", "-n", self.node, "link", "add", node_if, "type", "veth", "peer", "name", LAN_IF, "netns", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        for ns, dev, addresses in ((self.node, node_if, node_addresses), (name, LAN_IF, peer_addresses)):
            for cidr in addresses:
                run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else [])])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self._wait_ready(((self.node, node_if), (name, LAN_IF)))
        return name

    # -- pods ---------------------------------------------------------------
    def add_pod(self) -> tuple[str, str]:
        """Create an empty pod netns; returns (name, /var/run/netns/name)."""
        name = new_name("pod")
        path = self._add_ns(name)
        with self._lock:
            self.pods.append(name)
        return name, path

    def del_pod(self, pod: str) -> None:
        """Delete a pod netns early (e.g. to test DEL without a netns)."""
        if pod not in self.pods:
            raise ValueError(f"unknown pod netns {pod!r}")
        delete_netns(pod)

    def namespaces(self) -> list[str]:
        with self._lock:
            return list(self._created)

    # -- teardown -----------------------------------------------------------
    def close(self) -> None:
        """Delete every namespace we created (pods first); never raises for
        an already-missing namespace.  Raises at the end if one could not be
        removed, so a leak is loud rather than silent."""
        with self._lock:
            names = list(self._created)
        # pods (newest first), then node, then lan
        ordered = [x for x in reversed(names) if x not in (self.node, self.lan)]
        ordered += [x for x in (self.node, self.lan) if x in names]
        leaked = []
        for name in ordered:
            try:
                if not delete_netns(name):
                    leaked.append(name)
            except Exception:  # pragma: no cover - keep going, report below
                leaked.append(name)
        with self._lock:
            self._created = [x for x in self._created if x in leaked]
        if leaked:
            raise RuntimeError("could not delete netns: {}".format(", ".join(leaked)))

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def existing(names: Iterable[str]) -> list[str]:
    """Which of *names* still exist as named network namespaces."""
    present = set(list_netns())
    return [n for n in names if n in present]


# --------------------------------------------------------------------------
# the libcni driver (tests/cnidriver) and CNI_PATH
# --------------------------------------------------------------------------

class SetupError(RuntimeError):
    """The test bed cannot be prepared (driver build, missing reference plugin)."""


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


# --------------------------------------------------------------------------
# route reconcile --watch, and whether the node is in shape (tests/e2e/test_self_healing.py, tools/heal_bench.py)
# --------------------------------------------------------------------------

class Watcher:
    """`route reconcile --watch` run as a node runs it: in the node namespace, with a runtime-like environment
    (`ip netns exec NODE env -i PATH=... ROUTE reconcile --watch --state-dir DIR OPTIONS`), stderr to a file.

    *route* is an executable a node can run (make_cni_path's `route`: the one-file build, or the source tree's
    wrapper). `command` replaces the whole command (the DaemonSet's), with `path` as its PATH."""

    def __init__(self, node: str, route, state_dir, *options: str, stderr_path, command=None,
                 path: str = NODE_PATH) -> None:
        command = command or [str(route), "reconcile", "--watch", "--state-dir", str(state_dir), *options]
        env = runtime_env(PATH=path)
        self.node = node
        self.stderr_path = Path(stderr_path)
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(["ip", "netns", "exec", node, "env", "-i",
                                          *[f"{k}={v}" for k, v in env.items()], *command],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.pid = self.proc.pid  # ip netns exec and env exec it: this pid is the watcher itself

    def output(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> bool:
        """Whether `text` appears in its stderr within `timeout` s (False at once if it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.02)
        return False

    def monitor_pids(self) -> list[int]:
        """The pids of its `ip ... monitor` children."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid and b"monitor" in cmdline:
                found.append(int(entry))
        return found

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; (exit status or None if still running after `timeout`, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout), time.monotonic() - started
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def shape_problems(node: str, ips: Iterable[str], shim: str = "eno1.host", master: str = "eno1") -> list[str]:
    """What keeps the node's pods cut off from it, read with ip -json: the shim missing, down, not a bridge
    macvlan on master, with another MTU or other global addresses than master, or a pod IP without its
    proto 201 route on the shim. Empty when the node is in shape."""
    links = {link["ifname"]: link for link in
             json.loads(run(["ip", "-n", node, "-json", "-d", "addr", "show"]).stdout or "[]")}
    if shim not in links or master not in links:
        return [f"{name} missing" for name in (shim, master) if name not in links]
    s, m = links[shim], links[master]
    found = [] if "UP" in s["flags"] else [f"{shim} down"]
    info = s.get("linkinfo", {})
    if (info.get("info_kind"), info.get("info_data", {}).get("mode"), s.get("link")) != ("macvlan", "bridge", master):
        found.append(f"{shim} is not a bridge macvlan on {master}")
    if s["mtu"] != m["mtu"]:
        found.append(f"{shim} mtu {s['mtu']}, {master} {m['mtu']}")

    def addresses(link):
        return sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") == "global")

    if addresses(s) != addresses(m):
        found.append(f"{shim} has {addresses(s)}, {master} {addresses(m)}")
    routed = set()
    for family in ("-4", "-6"):
        routed |= {r["dst"] for r in json.loads(run(["ip", "-n", node, "-json", family, "route", "show", "proto",
                                                    "201", "dev", shim], check=False).stdout or "[]")}
    found += [f"no route to {ip} on {shim}" for ip in ips if ip not in routed]
    return found


def wait_in_shape(node: str, ips: Iterable[str], timeout: float = 10.0, **names: str) -> float | None:
    """Seconds until shape_problems() is empty, polled every 20 ms; None if not within `timeout`."""
    ips = list(ips)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not shape_problems(node, ips, **names):
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def remake_at_the_same_inode(name: str, tries: int = 300) -> None:
    """Delete the network namespace `name` (ip netns) and make one at its path again that has its freed inode
    number, as a runtime that crashed (no DEL) and made a new pod's namespace there may get. The kernel gives the
    lowest free number once a freed namespace is cleaned up, so lower free ones are held meanwhile by fillers
    (bind mounts of the namespaces that got them), removed at the end."""
    path = f"/run/netns/{name}"
    inode = os.stat(path).st_ino
    run(["ip", "netns", "del", name])
    fillers: list[str] = []
    try:
        for i in range(tries):
            time.sleep(0.02)
            run(["ip", "netns", "add", name])
            got = os.stat(path).st_ino
            if got == inode:
                return
            if got < inode:  # a lower number was free: keep it taken
                fillers.append(f"{name}-{i}")
                open(f"/run/netns/{fillers[-1]}", "w").close()
                run(["mount", "--bind", path, f"/run/netns/{fillers[-1]}"])
            run(["ip", "netns", "del", name])
        raise SetupError(f"no new namespace got the inode {inode} in {tries} tries")
    finally:
        for filler in fillers:
            run(["ip", "netns", "del", filler], check=False)
