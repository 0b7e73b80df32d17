"""The one place that runs host commands: ip(8) and nft(8), in a pod's namespace through nsenter, and sysctls.

Everything it runs goes into the call's Journal (journal.py): changes as replayable shell lines, reads as
comments. One exit-status policy for every call: a status outside `ok` (by default only 0) raises
CommandFailed, which carries the status and stderr; within `ok`, the caller gets Completed(status, out, err).
What runs an argv is the runner's host: SystemHost (host.py: sh and /proc/sys), a fake in unit tests.
"""
import contextlib
import shlex
import time
from collections import Counter, namedtuple

from . import iproute
from .errors import CommandFailed, CommandTimeout, ReadTooLarge
from .host import SystemHost

IP = "ip"
ANY_STATUS = range(256)  # for a caller that reports the status itself (route replay)

Completed = namedtuple("Completed", "status out err")


class Runner:
    """Runs host commands with an argv list (never a shell), with a timeout, and journals what it did.

    `host` does the running: SystemHost (sh and /proc/sys) by default, a fake in unit tests.
    """

    def __init__(self, journal, timeout=10.0, dry_run=False, host=None):
        self.journal = journal
        self.timeout = timeout
        self.dry_run = dry_run
        self.host = host or SystemHost()
        self.changes = 0  # state-changing commands run (or, in a dry run, logged)
        self.changes_by_kind = Counter()  # the same, by the kind of repair they were made for (counting())
        self._kind = None

    @contextlib.contextmanager
    def counting(self, kind):
        """Count the changes made inside under `kind` too (route reconcile's repairs by kind); the innermost wins."""
        outer, self._kind = self._kind, kind
        try:
            yield
        finally:
            self._kind = outer

    def _changed(self, count):
        self.changes += count
        if self._kind is not None:
            self.changes_by_kind[self._kind] += count

    def read(self, commands, ipv6=False, netns=None, limit=None):
        """Run read-only `ip` commands in one batch; return every JSON object they printed.

        A command about a missing device prints nothing, so absence is seen as absence, without
        parsing error text. (IPv6 route filters need -6: ip's batch lines cannot carry options.)
        With `netns` (a path), the commands run in that network namespace. With `limit`, ip may print at most
        that many bytes (what a pod holds is the pod's choice): ReadTooLarge when it would print more.
        """
        # exit 1: some command in the batch failed, e.g. "Device ... does not exist"
        return [obj for array in self._batch(commands, ipv6, netns, (0, 1), limit) for obj in array]

    def read_each(self, commands, ipv6=False, netns=None, limit=None):
        """Like read, in one batch, but the objects of each command apart: [[objects of commands[0]], ...].
        For commands that cannot fail (no device named); one that fails anyway raises CommandFailed."""
        arrays = self._batch(commands, ipv6, netns, (0,), limit)
        if len(arrays) != len(commands):
            raise CommandFailed(f"ip printed {len(arrays)} answers to {len(commands)} reads",
                                "every read of this batch should answer, if only with []")
        return arrays

    def _batch(self, commands, ipv6, netns, ok, limit=None):
        if not commands:
            return []
        ip = [*_enter(netns), IP, *(["-6"] if ipv6 else [])]
        for c in commands:
            self.journal.comment(shlex.join([*ip, "-json", "-d", *c]))
        script = "".join(shlex.join(c) + "\n" for c in commands)
        return iproute.batch_arrays(self._run([*ip, "-json", "-d", "-force", "-batch", "-"], script, ok, limit).out)

    def change(self, args, netns=None, program=IP):
        """Run one state-changing `ip ARGS` (or `nft ARGS`), in `netns` if given."""
        self.execute([*_enter(netns), program, *args])

    def change_batch(self, commands, netns=None, ipv6=False, force=False):
        """Run state-changing `ip` commands in one `ip -batch` process (in `netns` if given), logged one line each
        as the plain command that replays it. Stops at the first that fails, unless `force`: then all run, and
        the call fails at the end if any did."""
        if not commands:
            return
        ip = [*_enter(netns), IP, *(["-6"] if ipv6 else [])]
        self._changed(len(commands))
        for c in commands:
            if self.dry_run:
                self.journal.comment("dry-run, not run: " + shlex.join([*ip, *c]))
            else:
                self.journal.command([*ip, *c])
        if not self.dry_run:
            script = "".join(shlex.join(c) + "\n" for c in commands)
            self._run([*ip, *(["-force"] if force else []), "-batch", "-"], script, (0,))

    def query(self, args, program, ok=(0,)):
        """Run a read-only `PROGRAM ARGS` that is not an ip read (nft -j), logged as a comment."""
        argv = [program, *args]
        self.journal.comment(shlex.join(argv))
        return self._run(argv, None, ok)

    def execute(self, argv, ok=(0,), perform=None):
        """Run a state-changing argv as a replayable log line. Dry-run only logs it.

        `perform() -> (status, stderr)` makes the change another way than running argv, which is then the
        command that replays it.
        """
        self._changed(1)
        if self.dry_run:
            self.journal.comment("dry-run, not run: " + shlex.join(argv))
            return Completed(0, "", "")
        self.journal.command(argv)
        if perform is None:
            return self._run(argv, None, ok)
        started = time.monotonic()
        status, err = perform()
        self.journal.outcome(status, time.monotonic() - started, err)
        return _checked(argv, Completed(status, "", err), ok)

    def follow(self, args, on_line, on_end):
        """Start `ip ARGS` that runs until stopped (`ip monitor`): each line it prints goes to on_line(line),
        its end to on_end(status, stderr), both called in another thread. Returns its handle (.stop())."""
        argv = [IP, *args]
        self.journal.comment(shlex.join(argv))
        return self.host.follow(argv, on_line, on_end)

    def has_program(self, name):
        """Whether `name` is on PATH (a missing one is found before anything changes, not halfway)."""
        found = self.host.has_program(name)
        if not found:
            self.journal.comment(f"{name} is not on PATH")
        return found

    def sysctl(self, key):
        """The value of a sysctl given with '/' separators (interface names may hold dots), or None."""
        value = self.host.read_sysctl(key)
        self.journal.comment(f"sysctl {key} = {value}")
        return value

    def set_sysctl(self, key, value):
        """Write /proc/sys directly (minimal hosts lack procps); log it as the `sysctl -w` that replays it."""

        def write():
            try:
                self.host.write_sysctl(key, value)
            except OSError as e:
                return 1, str(e)
            return 0, ""

        self.execute(["sysctl", "-w", f"{key}={value}"], perform=write)

    def _run(self, argv, stdin, ok, limit=None):
        started = time.monotonic()
        try:
            status, out, err = self.host.execute(argv, stdin, self.timeout, limit=limit)
        except CommandTimeout:
            self.journal.outcome("killed", time.monotonic() - started, f"timed out after {self.timeout} s")
            raise
        self.journal.outcome(status, time.monotonic() - started, err)
        if limit is not None and len(out) >= limit:
            self.journal.comment(f"printed {limit} bytes or more: not read")
            raise ReadTooLarge(f"{shlex.join(argv)} printed {limit} bytes or more", "more than the plugin reads of it")
        return _checked(argv, Completed(status, out, err), ok)


def _checked(argv, completed, ok):
    if completed.status not in ok:
        raise CommandFailed(f"{shlex.join(argv)} failed (exit {completed.status})", completed.err.strip(),
                            status=completed.status)
    return completed


def _enter(netns):
    """The prefix that runs a command in the network namespace at path `netns` (any path: /proc/PID/ns/net)."""
    return ["nsenter", f"--net={netns}"] if netns else []
