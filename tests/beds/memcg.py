"""A memory cgroup like the DaemonSet's limit, for one command at a time (tests/e2e/test_multus_bounded.py).
A child of the cgroup this process is in, under cgroup v2 (memory.max, memory.peak,
memory.events) or the v1 memory controller (memory.limit_in_bytes, memory.max_usage_in_bytes,
memory.oom_control); removed on close. Stdlib only."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence

V2_ROOT = "/sys/fs/cgroup"
V1_ROOT = "/sys/fs/cgroup/memory"
DAEMONSET_LIMIT = 128 * 2 ** 20  # deploy/base/daemonset.yaml: the watcher container's memory limit, 128Mi


def _own(controller_line_filter) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if controller_line_filter(number, controllers):
                return path
    raise RuntimeError("this process is in no memory cgroup")


class MemoryCgroup:
    """`with MemoryCgroup(limit) as cg: subprocess.run(cg.argv([...]))` runs the command inside it; cg.peak()
    the most it used (bytes), cg.oom_kills() how many of its processes the kernel killed for its limit."""

    def __init__(self, limit: int = DAEMONSET_LIMIT) -> None:
        name = f"rtt-memcg-{os.getpid()}-{secrets.token_hex(4)}"
        if os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
            self.v2 = True
            parent = os.path.join(V2_ROOT, _own(lambda number, _: number == "0").lstrip("/"))
        elif os.path.isdir(V1_ROOT):
            self.v2 = False
            parent = os.path.join(V1_ROOT, _own(lambda _, controllers: "memory" in controllers.split(",")).lstrip("/"))
        else:
            raise RuntimeError("no memory cgroup controller mounted")
        self.path = os.path.join(parent, name)
        os.mkdir(self.path)
        try:
            self._write("memory.max" if self.v2 else "memory.limit_in_bytes", str(limit))
            if not self.v2:  # as v2 without swap: the limit is the limit
                try:
                    self._write("memory.memsw.limit_in_bytes", str(limit))
                except OSError:
                    pass
        except BaseException:
            os.rmdir(self.path)
            raise

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` started inside the cgroup (the shell moves itself in, then execs it)."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.path, *command]

    def peak(self) -> int:
        return int(self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes"))

    def reset_peak(self) -> None:
        """Start the next peak() from now (v1: writable; v2 since Linux 6.12, else the peak stays the cgroup's)."""
        try:
            self._write("memory.peak" if self.v2 else "memory.max_usage_in_bytes", "0")
        except OSError:
            pass

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        fields = dict(line.split() for line in text.splitlines() if line.strip())
        return int(fields.get("oom_kill", 0))

    def close(self) -> None:
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)
