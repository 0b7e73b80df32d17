"""The one place that runs host commands: ip(8) and nft(8) through `sh`, sysctls through /proc/sys.

Everything it runs goes into the call's Journal (journal.py): changes as replayable shell lines, reads as
comments. One exit-status policy for every call: a status outside `ok` (by default only 0) raises
CommandFailed, which carries the status and stderr; within `ok`, the caller gets Completed(status, out, err).
"""
import fcntl
import os
import shlex
import signal
import sys
import threading
import time
import types
from collections import namedtuple

from . import files, iproute
from .errors import CommandFailed, CommandTimeout

IP = "ip"
PROC_SYS = "/proc/sys"
NS_GET_NSTYPE, CLONE_NEWNET = 0xB703, 0x40000000  # linux/nsfs.h, linux/sched.h
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

    def read(self, commands, ipv6=False, netns=None):
        """Run read-only `ip` commands in one batch; return every JSON object they printed.

        A command about a missing device prints nothing, so absence is seen as absence, without
        parsing error text. (IPv6 route filters need -6: ip's batch lines cannot carry options.)
        With `netns` (a path), the commands run in that network namespace.
        """
        if not commands:
            return []
        ip = [*_enter(netns), IP, *(["-6"] if ipv6 else [])]
        for c in commands:
            self.journal.comment(shlex.join([*ip, "-json", "-d", *c]))
        script = "".join(shlex.join(c) + "\n" for c in commands)
        # exit 1: some command in the batch failed, e.g. "Device ... does not exist"
        out = self._run([*ip, "-json", "-d", "-force", "-batch", "-"], script, ok=(0, 1)).out
        return iproute.batch_objects(out)

    def change(self, args, netns=None, program=IP):
        """Run one state-changing `ip ARGS` (or `nft ARGS`), in `netns` if given."""
        self.execute([*_enter(netns), program, *args])

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

    def _run(self, argv, stdin, ok):
        started = time.monotonic()
        try:
            status, out, err = self.host.execute(argv, stdin, self.timeout)
        except CommandTimeout:
            self.journal.outcome("killed", time.monotonic() - started, f"timed out after {self.timeout} s")
            raise
        self.journal.outcome(status, time.monotonic() - started, err)
        return _checked(argv, Completed(status, out, err), ok)


def _checked(argv, completed, ok):
    if completed.status not in ok:
        raise CommandFailed(f"{shlex.join(argv)} failed (exit {completed.status})", completed.err.strip(),
                            status=completed.status)
    return completed


class SystemHost:
    """The real host: commands through sh, sysctls through /proc/sys."""

    def __init__(self):
        _import_sh_lean()  # here, so that no command's logged duration includes it

    @staticmethod
    def execute(argv, stdin, timeout):
        """(status, stdout, stderr); the process is killed after `timeout` s.

        The timeout is ours: sh's `_timeout` polls every 0.1 s, which would add that much to every call.
        """
        import sh

        try:
            proc = sh.Command(argv[0])(*argv[1:], _in=stdin or "", _bg=True, _bg_exc=False, _tty_out=False,
                                       _ok_code=range(256), _return_cmd=True)
        except sh.CommandNotFound:
            raise CommandFailed(f"{argv[0]} not found on PATH", "install the package that provides it") from None
        expired = threading.Event()
        timer = threading.Timer(timeout, _kill, (proc, expired))
        timer.start()
        try:
            proc.wait()
        except sh.SignalException as e:
            if not expired.is_set():
                raise CommandFailed(f"{shlex.join(argv)} was killed by signal {-e.exit_code}") from None
        finally:
            timer.cancel()
        if expired.is_set():
            raise CommandTimeout(f"{shlex.join(argv)} timed out after {timeout} s")
        return proc.exit_code, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    @staticmethod
    def has_program(name):
        import shutil  # only with routeViaHost

        return shutil.which(name) is not None

    @staticmethod
    def is_network_namespace(path):
        """Whether `path` (e.g. /var/run/netns/x, /proc/PID/ns/net) is a network namespace: ioctl NS_GET_NSTYPE.

        Namespace files are regular files (of nsfs): anything else is refused unopened or, if swapped in since,
        opened without blocking (a FIFO would block a plain open until a writer comes, forever)."""
        try:
            fd = files.open_regular(path, os.O_RDONLY, follow=True)
        except OSError:
            return False
        try:
            return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
        except OSError:  # not a namespace file at all
            return False
        finally:
            os.close(fd)

    @staticmethod
    def read_sysctl(key):
        try:
            with open(os.path.join(PROC_SYS, key)) as f:
                return f.read().strip()
        except FileNotFoundError:  # e.g. IPv6 disabled
            return None

    @staticmethod
    def write_sysctl(key, value):
        with open(os.path.join(PROC_SYS, key), "w") as f:
            f.write(value)


def _import_sh_lean():
    """Import sh without two things it brings that a CNI call never uses, ~55 ms of every call:

    - asyncio (which sh imports) imports ssl only to offer TLS; loading OpenSSL costs ~35 ms. With ssl
      marked absent, asyncio takes its documented no-ssl path.
    - sh reads its own version through importlib.metadata (email, zipfile, pathlib...: ~20 ms). Given a
      metadata module that knows no distribution, sh takes its own fallback: __version__ = "unknown".
    Both markers are removed again, so any later import gets the real modules. A module that is already
    loaded is left as it is: it costs nothing more, and its importers may rely on it (the real metadata
    module imports from itself while sh asks it for a version).
    """
    if "sh" in sys.modules:
        return
    stubs = {name: stub for name, stub in (("ssl", None), ("importlib.metadata", _NO_DISTRIBUTIONS))
             if name not in sys.modules}
    sys.modules.update(stubs)
    try:
        import sh  # noqa: F401
    finally:
        for name in stubs:
            del sys.modules[name]
        importlib = sys.modules["importlib"]
        if getattr(importlib, "metadata", None) is _NO_DISTRIBUTIONS:
            del importlib.metadata


class _NoSuchPackage(ModuleNotFoundError):
    pass


def _no_version(name):
    raise _NoSuchPackage(name)


_NO_DISTRIBUTIONS = types.ModuleType("importlib.metadata", "stands in for importlib.metadata while sh imports")
_NO_DISTRIBUTIONS.PackageNotFoundError, _NO_DISTRIBUTIONS.version = _NoSuchPackage, _no_version


def _kill(proc, expired):
    expired.set()
    try:
        proc.signal(signal.SIGKILL)
    except ProcessLookupError:  # it finished just in time
        pass


def _enter(netns):
    """The prefix that runs a command in the network namespace at path `netns` (any path: /proc/PID/ns/net)."""
    return ["nsenter", f"--net={netns}"] if netns else []
