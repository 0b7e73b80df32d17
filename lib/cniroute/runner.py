"""The one place that runs ip(8) (through `sh`) and writes the replayable log.

Every invocation of the plugin produces one block of log text. Changes appear as plain shell lines
(shlex-quoted, exactly as run) followed by a comment with their exit status, duration and stderr; reads
appear only as comments. The block is therefore a POSIX sh script: `sh LOG` re-applies every change.
"""
import fcntl
import importlib
import json
import os
import shlex
import signal
import stat
import sys
import threading
import time
import types

from . import __version__
from .errors import CommandFailed, CommandTimeout

IP = "ip"
PROC_SYS = "/proc/sys"
NS_GET_NSTYPE, CLONE_NEWNET = 0xB703, 0x40000000  # linux/nsfs.h, linux/sched.h


BLOCK_START = "# == route "  # first line of every block: "# == route VERSION | TIME | VERB | pid PID"
HEADER_FIELDS = ("container", "ifname", "netns", "network", "cniVersion")


class Journal:
    """The text of one invocation's log block: a header of comments, then what was run."""

    def __init__(self, started=None):
        self.started = time.time() if started is None else started
        self.header = {}
        self.lines = []

    def comment(self, text):
        # Every line of a comment is prefixed, so no value (env, config, stderr) can smuggle in a command.
        self.lines.extend("# " + line for line in str(text).splitlines() or [""])

    def command(self, argv):
        line = shlex.join(argv)
        if len(line.splitlines()) != 1:  # a line break of any kind (\r, \u2028...) would break replay
            raise ValueError(f"refusing to run and log a command that spans lines: {line!r}")
        self.lines.append(line)

    def outcome(self, status, seconds, stderr):
        self.lines.append(f"# exit {status} in {seconds * 1000:.1f} ms")
        self.lines.extend("#   " + line for line in stderr.splitlines())

    def text(self):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.started)) + f".{int(self.started % 1 * 1000):03d}Z"
        verb = _one_line(self.header.get("command", "-"))
        head = [f"{BLOCK_START}{__version__} | {stamp} | {verb} | pid {os.getpid()}"]
        head += [f"# {key}: {_one_line(self.header[key])}" for key in HEADER_FIELDS if key in self.header]
        return "".join(line + "\n" for line in head + self.lines)


def _one_line(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def append_block(path, text, max_bytes):
    """Append one block to the log with a single O_APPEND write, rotating to PATH.1 past max_bytes.

    The file is created 0600, never through a symlink (O_NOFOLLOW), and written under flock so that
    blocks of concurrent invocations never interleave and only one of them rotates.
    """
    data = text.encode("utf-8", "replace")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    for _ in range(5):  # another invocation may rotate the file between our open and our lock
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            if not stat.S_ISREG(mine.st_mode):
                raise OSError(f"{path} is not a regular file")
            try:
                if os.stat(path, follow_symlinks=False).st_ino != mine.st_ino:
                    continue
            except FileNotFoundError:
                continue
            if mine.st_size and mine.st_size + len(data) > max_bytes:
                os.replace(path, path + ".1")
                continue
            os.write(fd, data)
            return
        finally:
            os.close(fd)
    raise OSError(f"{path} kept being rotated under us")


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
        argv = [*ip, "-json", "-d", "-force", "-batch", "-"]
        status, out, _ = self._run(argv, script)
        if status not in (0, 1):  # 1: some command in the batch failed, e.g. "Device ... does not exist"
            raise CommandFailed(f"ip exited {status}", f"{shlex.join(argv)} with input {script!r}")
        return _json_objects(out)

    def change(self, args, netns=None, program=IP):
        """Run one state-changing `ip ARGS` (or `nft ARGS`), in `netns` if given; CommandFailed if it fails."""
        argv = [*_enter(netns), program, *args]
        status, err = self.run_logged(argv)
        if status != 0:
            raise CommandFailed(f"{shlex.join(argv)} failed (exit {status})", err.strip())

    def query(self, args, program):
        """Run a read-only `PROGRAM ARGS` that is not an ip read (nft -j); (status, stdout). Logged as a comment."""
        argv = [program, *args]
        self.journal.comment(shlex.join(argv))
        status, out, _ = self._run(argv, None)
        return status, out

    def run_logged(self, argv, perform=None):
        """Run a state-changing argv as a replayable log line; (status, stderr). Dry-run only logs it.

        `perform() -> (status, stderr)` makes the change another way than running argv, which is then the
        command that replays it.
        """
        if self.dry_run:
            self.journal.comment("dry-run, not run: " + shlex.join(argv))
            return 0, ""
        self.journal.command(argv)
        if perform is None:
            status, _, err = self._run(argv, None)
            return status, err
        started = time.monotonic()
        status, err = perform()
        self.journal.outcome(status, time.monotonic() - started, err)
        return status, err

    def sysctl(self, key):
        """The value of a sysctl given with '/' separators (interface names may hold dots), or None."""
        value = self.host.read_sysctl(key)
        self.journal.comment(f"sysctl {key} = {value}")
        return value

    def set_sysctl(self, key, value):
        """Write /proc/sys directly (minimal hosts lack procps); log it as the `sysctl -w` that replays it."""
        argv = ["sysctl", "-w", f"{key}={value}"]

        def write():
            try:
                self.host.write_sysctl(key, value)
            except OSError as e:
                return 1, str(e)
            return 0, ""

        status, err = self.run_logged(argv, write)
        if status != 0:
            raise CommandFailed(f"{shlex.join(argv)} failed", err)

    def _run(self, argv, stdin):
        started = time.monotonic()
        try:
            status, out, err = self.host.execute(argv, stdin, self.timeout)
        except CommandTimeout:
            self.journal.outcome("killed", time.monotonic() - started, f"timed out after {self.timeout} s")
            raise
        self.journal.outcome(status, time.monotonic() - started, err)
        return status, out, err


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
    def is_network_namespace(path):
        """Whether `path` (e.g. /var/run/netns/x, /proc/PID/ns/net) is a network namespace: ioctl NS_GET_NSTYPE."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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
    """Import sh without the modules it imports but a CNI call never uses: three quarters of its import time.

    While sh imports, each module in _STAND_INS is a stand-in (unless already imported) that answers the
    few names sh uses in every call itself and imports the real module for anything else, at first use.
    So sh works in full, and any later import of these modules, by anyone, gets the real ones.
    """
    if "sh" in sys.modules:
        return
    stand_ins = [name for name in _STAND_INS if name not in sys.modules]  # imported already: nothing to save
    sys.modules.update((name, _on_demand(name, _STAND_INS[name])) for name in stand_ins)
    try:
        import sh  # noqa: F401
    finally:
        for name in stand_ins:
            del sys.modules[name]


def _on_demand(name, answers):
    """A module that answers `answers` itself and imports the real `name` for anything else."""
    module = types.ModuleType(name, f"stands in for {name} while sh has not needed it")

    def real_attribute(attribute):
        if attribute.startswith("__"):  # the import system probing (`from asyncio import X` asks __path__)
            raise AttributeError(attribute)
        real = importlib.import_module(name)
        if real is module:  # sh itself, while importing, asks for something not in answers
            raise ImportError(f"sh needs {name}.{attribute} at import: answer it in runner._STAND_INS")
        return getattr(real, attribute)

    module.__getattr__ = real_attribute
    module.__dict__.update(answers)
    return module


def _running_loop():
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # no event loop can run before asyncio is imported
        raise RuntimeError("no running event loop")  # what asyncio.get_running_loop says then
    return asyncio.get_running_loop()


def _async_queue(*args, **kwargs):
    return importlib.import_module("asyncio").Queue(*args, **kwargs)


class _Logger:
    """What sh gets from logging.getLogger(name): the real logger, once anything has imported logging.
    Until then nothing can have configured logging, so a record below WARNING (sh emits only debug and
    info) would be dropped by the real logger too; anything else imports logging."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attribute):
        if attribute in ("debug", "info") and "logging" not in sys.modules:
            return _drop
        return getattr(importlib.import_module("logging").getLogger(self.name), attribute)


def _drop(*args, **kwargs):
    pass


class _NoSuchPackage(ModuleNotFoundError):
    pass


def _no_version(name):
    raise _NoSuchPackage(name)


# What sh uses of each module at import and in every call, answered without importing it (see README,
# Performance, for what each costs). Only importlib.metadata answers differently: it knows no distribution,
# so sh takes its own fallback, __version__ = "unknown", instead of loading email, zipfile, csv...
_STAND_INS = {
    "asyncio": {"get_running_loop": _running_loop, "Queue": _async_queue},  # `await` needs a running loop
    "logging": {"getLogger": _Logger},
    "traceback": {}, "textwrap": {}, "inspect": {},  # for error reports and output callbacks only
    "platform": {"system": lambda: os.uname().sysname},  # what platform.system() returns on Linux
    "importlib.metadata": {"version": _no_version, "PackageNotFoundError": _NoSuchPackage},
}


def _kill(proc, expired):
    expired.set()
    try:
        proc.signal(signal.SIGKILL)
    except ProcessLookupError:  # it finished just in time
        pass


def _enter(netns):
    """The prefix that runs a command in the network namespace at path `netns` (any path: /proc/PID/ns/net)."""
    return ["nsenter", f"--net={netns}"] if netns else []


def _json_objects(text):
    """Objects of a stream of concatenated JSON arrays, as `ip -json -batch` prints them."""
    decoder = json.JSONDecoder()
    objects, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return objects
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise CommandFailed("unparseable ip -json output", f"{e}: {text[pos:pos + 200]!r}") from None
        objects.extend(value if isinstance(value, list) else [value])
