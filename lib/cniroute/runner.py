"""The one place that runs host commands: ip(8) and nft(8) through `sh`, sysctls through /proc/sys.

Everything it runs goes into the call's Journal (journal.py): changes as replayable shell lines, reads as
comments. One exit-status policy for every call: a status outside `ok` (by default only 0) raises
CommandFailed, which carries the status and stderr; within `ok`, the caller gets Completed(status, out, err).
"""
import contextlib
import errno
import fcntl
import functools
import importlib
import os
import shlex
import signal
import sys
import threading
import time
import types
from collections import Counter, namedtuple

from . import files, iproute
from .errors import CommandFailed, CommandTimeout, ReadTooLarge
from .records import COOKIE

IP = "ip"
PROC_SYS = "/proc/sys"
NS_GET_NSTYPE, CLONE_NEWNET = 0xB703, 0x40000000  # linux/nsfs.h, linux/sched.h
NS_GET_ID = 0x8008B70D  # _IOR(NSIO, 0xd, __u64), linux/nsfs.h (Linux 6.18 on): a network namespace's cookie
SO_NETNS_COOKIE = 71  # asm-generic/socket.h (Linux 5.14 on): the cookie of a socket's network namespace
PR_SET_PDEATHSIG = 1  # linux/prctl.h
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


class SystemHost:
    """The real host: commands through sh, sysctls through /proc/sys (or where the node's is mounted: a
    container's own /proc/sys is read-only)."""

    def __init__(self, proc_sys=PROC_SYS):
        _import_sh_lean()  # here, so that no command's logged duration includes it
        self.proc_sys = proc_sys

    @staticmethod
    def execute(argv, stdin, timeout, limit=None):
        """(status, stdout, stderr); the process is killed after `timeout` s. With `limit`, it can write at most
        that many bytes to its stdout or stderr (RLIMIT_FSIZE: a write past it fails), so a read of something
        huge costs no more memory than `limit`.

        The timeout is ours: sh's `_timeout` polls every 0.1 s, which would add that much to every call.
        The command's stdin, stdout and stderr are memory files (memfd_create), not pipes: sh hands a file
        descriptor to the command as it is, so it starts no thread to feed the input nor streams to collect
        the output (a sixth of an ip call's CPU), and the output is read back once the command has ended.
        """
        import sh

        streams = [os.memfd_create(name) for name in ("stdin", "stdout", "stderr")]
        try:
            os.write(streams[0], (stdin or "").encode())
            os.lseek(streams[0], 0, os.SEEK_SET)
            try:
                proc = sh.Command(argv[0])(*argv[1:], _in=streams[0], _out=streams[1], _err=streams[2], _bg=True,
                                           _bg_exc=False, _ok_code=range(256), _return_cmd=True,
                                           _preexec_fn=limit and functools.partial(_limit_writes, limit))
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
            return proc.exit_code, _written(streams[1]), _written(streams[2])
        finally:
            for fd in streams:
                os.close(fd)

    @staticmethod
    def has_program(name):
        import shutil  # only with routeViaHost

        return shutil.which(name) is not None

    @staticmethod
    def is_network_namespace(path):
        try:
            os.close(_open_network_namespace(path))
        except OSError:
            return False
        return True

    @staticmethod
    def namespace_id(path, like=None):
        """identify_namespace, or None when `path` is no network namespace (or cannot be opened)."""
        try:
            return SystemHost.identify_namespace(path, like)
        except OSError:
            return None

    @staticmethod
    def identify_namespace(path, like=None):
        """Which network namespace `path` (e.g. /var/run/netns/x, /proc/PID/ns/net) is: "cookie:N", its cookie,
        which the kernel gives no other namespace until it reboots. OSError with the reason when it is none.

        The old form, DEVICE:INODE of its nsfs file, proves less (the kernel gives a freed inode number to the
        next namespace): it is what `like`, a recorded identity, holds in records of older versions, and what a
        kernel older than 5.14, which tells no cookie, is identified by."""
        fd = _open_network_namespace(path)
        try:
            if not like or like.startswith(COOKIE):
                try:
                    return COOKIE + str(_cookie(fd))
                except OSError as e:
                    if like or e.errno != errno.ENOPROTOOPT:  # ENOPROTOOPT: no SO_NETNS_COOKIE (before 5.14)
                        raise
            info = os.fstat(fd)
            return f"{info.st_dev}:{info.st_ino}"
        finally:
            os.close(fd)

    @staticmethod
    def in_nodes_network_namespace():
        """Whether we run in PID 1's network namespace, the node's own (the one NetworkManager and
        systemd-networkd manage), rather than in one that a container or a test made."""
        try:
            mine, first = os.stat("/proc/self/ns/net"), os.stat("/proc/1/ns/net")
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (first.st_dev, first.st_ino)

    def read_sysctl(self, key):
        try:
            with open(os.path.join(self.proc_sys, key)) as f:
                return f.read().strip()
        except FileNotFoundError:  # e.g. IPv6 disabled
            return None

    def write_sysctl(self, key, value):
        with open(os.path.join(self.proc_sys, key), "w") as f:
            f.write(value)

    @staticmethod
    def follow(argv, on_line, on_end):
        """Start a long-running argv (see Runner.follow). Call it from the thread that outlives the process
        (the main one): the child is killed when that thread ends, even by kill -9, so no `ip monitor` is
        left behind to keep a network namespace alive."""
        import ctypes

        import sh

        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getpid()

        def die_with_parent():  # in the child, before exec
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

        try:
            proc = sh.Command(argv[0])(*argv[1:], _bg=True, _bg_exc=False, _tty_out=False, _out=on_line,
                                       _ok_code=range(256), _preexec_fn=die_with_parent)
        except sh.CommandNotFound:
            raise CommandFailed(f"{argv[0]} not found on PATH", "install the package that provides it") from None

        def wait():
            try:
                proc.wait()
                status = proc.exit_code
            except sh.SignalException as e:
                status = f"signal {-e.exit_code}"
            on_end(status, proc.stderr.decode(errors="replace"))

        threading.Thread(target=wait, name=f"wait for {argv[0]} {proc.pid}", daemon=True).start()
        return Followed(proc)


class Followed:
    """A running process started by SystemHost.follow."""

    def __init__(self, proc):
        self._proc = proc
        self.pid = proc.pid

    def stop(self):
        try:
            self._proc.terminate()
        except ProcessLookupError:  # it has ended already
            pass


class NodeRoot(SystemHost):
    """The node's own programs, seen from a container that mounts the node's / at `root` (route install
    --node-root): every command runs chrooted there, so it is the node's python3, ip or nsenter that answers."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def execute(self, argv, stdin, timeout, limit=None):
        return SystemHost.execute(["chroot", self.root, *argv], stdin, timeout, limit)


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


class _Annotation:
    """What sh's annotations are made of while typing is stood in for: any subscript of it is itself. They are
    stored in sh's __annotations__, which nothing reads (the plugin does not, sh itself does not)."""

    def __getitem__(self, item):
        return self


class _NoSuchPackage(ModuleNotFoundError):
    pass


def _no_version(name):
    raise _NoSuchPackage(name)


# What sh uses of each module at import and in every call, answered without importing it (see
# docs/performance.md for what each costs). Only importlib.metadata answers differently: it knows no distribution,
# so sh takes its own fallback, __version__ = "unknown", instead of loading email, zipfile, csv...
_STAND_INS = {
    "asyncio": {"get_running_loop": _running_loop, "Queue": _async_queue},  # `await` needs a running loop
    "logging": {"getLogger": _Logger},
    "traceback": {}, "textwrap": {}, "inspect": {},  # for error reports and output callbacks only
    "platform": {"system": lambda: os.uname().sysname},  # what platform.system() returns on Linux
    "importlib.metadata": {"version": _no_version, "PackageNotFoundError": _NoSuchPackage},
    # sh annotates a few globals and a class attribute (`Dict[str, Type[ErrorReturnCode]]`); nothing reads them
    "typing": {name: _Annotation() for name in ("Any", "Dict", "Type", "Union")},
}


def _kill(proc, expired):
    expired.set()
    try:
        proc.signal(signal.SIGKILL)
    except ProcessLookupError:  # it finished just in time
        pass


def _limit_writes(limit):
    """In the child, before exec: no file it writes grows past `limit` bytes (its stdout and stderr are memory
    files). SIGXFSZ is ignored, as Python left it: a write past the limit fails, and ip goes on to its end."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _written(fd):
    """What a command wrote to the memory file `fd`, as text."""
    return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def _open_network_namespace(path):
    """A descriptor of the network namespace file at `path`; OSError when it is none.

    Namespace files are regular files (of nsfs): anything else is refused unopened or, if swapped in since,
    opened without blocking (a FIFO would block a plain open until a writer comes, forever)."""
    fd = files.open_regular(path, os.O_RDONLY, follow=True)
    try:
        is_net = fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:  # not a namespace file at all
        is_net = False
    if not is_net:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a network namespace", path)
    return fd


def _cookie(fd):
    """The cookie of the network namespace open at `fd`: asked of nsfs (NS_GET_ID), or on a kernel that does
    not answer that, of a socket made inside the namespace (SO_NETNS_COOKIE)."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, NS_GET_ID, bytes(8)), sys.byteorder)
    except OSError as e:
        if e.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
    return _cookie_from_inside(fd)


def _cookie_from_inside(fd):
    """SO_NETNS_COOKIE of a socket made in the namespace at `fd`, by a thread that enters it and ends: setns
    moves only the calling thread, and that thread is gone with the namespace it entered (CAP_SYS_ADMIN)."""
    import ctypes
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    answer = []

    def inside():
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            answer.append(OSError(code, f"cannot enter it: {os.strerror(code)}"))
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            answer.append(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder))

    thread = threading.Thread(target=inside, name="netns cookie")
    thread.start()
    thread.join()
    if isinstance(answer[0], OSError):
        raise answer[0]
    return answer[0]


def _enter(netns):
    """The prefix that runs a command in the network namespace at path `netns` (any path: /proc/PID/ns/net)."""
    return ["nsenter", f"--net={netns}"] if netns else []
