"""What a container runtime bed leaves on the machine and how to find and remove it: the processes and cgroups
under a parent of the bed's own, mount points, the machine-wide paths a runtime uses whatever it is told; and
whether a binary can run in an image without libc."""

from __future__ import annotations

import os
import signal
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# libcni's result cache: podman 4.3 and containerd 1.6 keep their CNI results there whatever they are told.
CNI_RESULTS = Path("/var/lib/cni/results")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_static(binary: Path) -> bool:
    """True for an ELF64 executable without an interpreter (PT_INTERP): it runs in a rootfs without libc."""
    data = binary.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def cgroup_pids(parent: str) -> set[int]:
    """The processes in the cgroup `parent` (a directory under each hierarchy's root) and below, in any hierarchy."""
    return {int(pid) for procs in CGROUP_ROOT.glob(f"*/{parent.lstrip('/')}/**/cgroup.procs")
            for pid in procs.read_text().split()}


def remove_cgroups(parent: str) -> list[str]:
    """Remove the cgroup `parent` and those below it in every hierarchy; returns what could not be removed."""
    stuck = []
    for top in CGROUP_ROOT.glob(f"*/{parent.lstrip('/')}"):
        for folder in sorted((entry[0] for entry in os.walk(top)), key=len, reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                stuck.append(folder)
    return stuck


def end_processes(find: Callable[[], list[int]], timeout: float = 15.0) -> list[int]:
    """Wait for find() to find no process; kill and return those it still finds then."""
    deadline = time.monotonic() + timeout
    while (pids := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def mounts_under(path: Path) -> list[str]:
    """Mount points below *path*, deepest first (podman's per-container shm tmpfs, while it lives)."""
    prefix = f"{path}/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((point for point in points if point.startswith(prefix)), reverse=True)


class MadePaths:
    """Machine-wide paths a runtime makes whatever it is told (its sockets, libcni's cache), children first: which
    of them existed before the bed, so that the bed removes only those it made, each once empty."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths
        self.before = {path for path in paths if os.path.lexists(path)}

    def remove(self) -> None:
        for path in self.paths:
            if path in self.before:
                continue
            try:
                if path.is_dir():
                    path.rmdir()
                elif path.exists():
                    path.unlink()
            except OSError:  # a directory someone else uses too
                pass
