"""The throw-away network namespaces of the test beds, and running commands inside them.

Every namespace created here is named ``rtt-<kind>-<pid>-<random>`` so that :func:`sweep_leftovers` can find
and delete anything a crashed run left behind -- and only that: namespaces of a process that is still running
(another pytest session, the demo) are left alone, so concurrent runs do not break each other.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterable, Sequence

from .runtime import SetupError, run

PREFIX = "rtt-"
NETNS_DIR = "/var/run/netns"


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
    """Names of all named network namespaces, half-created mount points included: the entries of NETNS_DIR, where
    `ip netns` keeps them. (Not `ip netns list`, which opens each entry: a FIFO planted there would hang it.)"""
    return sorted(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else []


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


def ns_exec(name: str, argv: Sequence[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run argv inside namespace *name* via ``ip netns exec``."""
    return run(["ip", "netns", "exec", name] + list(argv), check=check, **kw)


def existing(names: Iterable[str]) -> list[str]:
    """Which of *names* still exist as named network namespaces."""
    present = set(list_netns())
    return [n for n in names if n in present]


def in_node(node: str, argv: Sequence[str]) -> list[str]:
    """argv run in the network namespace *node* only, for a container runtime (podman, buildah, containerd).

    nsenter --net switches only the network namespace. `ip netns exec` gives each call a mount namespace of its
    own with a fresh /sys: runc finds no cgroup mount there ("runc create failed: no cgroup mount found in
    mountinfo"), and the mounts a runtime makes (a container's /run/netns/netns-* bind mount) would not outlive
    the call that made them, while a later `podman rm` needs them. What the runtime leaves running (conmon, the
    shims, the `podman container cleanup` conmon starts when a container exits) stays in the node netns too."""
    return ["nsenter", f"--net={netns_path(node)}", *argv]


def remake_at_the_same_inode(name: str, tries: int = 300) -> None:
    """Delete the network namespace `name` (ip netns) and make one at its path again that has its freed inode
    number, as a runtime that crashed (no DEL) and made a new pod's namespace there may get. The kernel gives the
    lowest free number once a freed namespace is cleaned up, so lower free ones are held meanwhile by fillers
    (bind mounts of the namespaces that got them), removed at the end."""
    path = netns_path(name)
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
                open(netns_path(fillers[-1]), "w").close()
                run(["mount", "--bind", path, netns_path(fillers[-1])])
            run(["ip", "netns", "del", name])
        raise SetupError(f"no new namespace got the inode {inode} in {tries} tries")
    finally:
        for filler in fillers:
            run(["ip", "netns", "del", filler], check=False)
