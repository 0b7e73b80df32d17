"""Throw-away network-namespace topologies for the `route` plugin tests.

Stdlib only; every external command is run with an argv list (never a shell).

Every namespace created here is named ``rtt-<kind>-<random>`` so that
:func:`sweep_leftovers` can find and delete anything a crashed run left
behind.  Nothing in here touches the machine's own (init netns) interfaces,
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
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterable, Sequence

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


class CommandError(RuntimeError):
    """A command run with check=True failed; carries the CompletedProcess."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        super().__init__(
            "command {!r} failed with rc={}\nstdout: {}\nstderr: {}".format(proc.args, proc.returncode, (proc.stdout or "").strip(),
               (proc.stderr or "").strip())
        )


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
    """A fresh namespace name: rtt-<kind>-<8 hex chars>."""
    return f"{PREFIX}{kind}-{secrets.token_hex(4)}"


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
    """Delete every ``rtt-*`` network namespace; returns the names removed."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"sweep prefix must start with {PREFIX!r}")
    removed = []
    for name in list_netns():
        if name.startswith(prefix):
            delete_netns(name)
            removed.append(name)
    return removed


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
        n, l = self.node, self.lan
        # Create the veth pair inside the node netns and push the peer
        # straight into the lan netns: nothing ever appears in the root netns.
        run(["ip", "-n", n, "link", "add", NODE_IF, "type", "veth",
             "peer", "name", LAN_IF, "netns", l])
        for ns, dev, v4, v6 in ((n, NODE_IF, NODE_V4, NODE_V6),
                                (l, LAN_IF, LAN_V4, LAN_V6)):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "addr", "add", "%s/%d" % (v4, PREFIX_V4), "dev", dev])
            run(["ip", "-n", ns, "-6", "addr", "add", "%s/%d" % (v6, PREFIX_V6),
                 "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])

    # -- exec helpers -------------------------------------------------------
    def node_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.node, argv, **kw)

    def lan_exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns_exec(self.lan, argv, **kw)

    def pod_exec(self, pod: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        if pod not in self.pods:
            raise ValueError(f"unknown pod netns {pod!r}")
        return ns_exec(pod, argv, **kw)

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
