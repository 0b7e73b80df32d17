"""The host's side of the runner (runner.py): what runs an argv the runner gives it, through sh with a timeout, and
what reads and writes /proc/sys. The runner alone calls it to run a command, and journals what it runs; unit tests
give the runner a fake host instead (tests/fakeip.py). Besides, it tells network namespaces apart: by their
cookie, which the kernel never gives another namespace until it reboots.
"""
import errno
import fcntl
import functools
import os
import shlex
import signal
import sys
import threading

from . import files, lean_sh
from .errors import CommandFailed, CommandTimeout
from .records import COOKIE

PROC_SYS = "/proc/sys"
NS_GET_NSTYPE, CLONE_NEWNET = 0xB703, 0x40000000  # linux/nsfs.h, linux/sched.h
NS_GET_ID = 0x8008B70D  # _IOR(NSIO, 0xd, __u64), linux/nsfs.h (Linux 6.18 on): a network namespace's cookie
SO_NETNS_COOKIE = 71  # asm-generic/socket.h (Linux 5.14 on): the cookie of a socket's network namespace
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SystemHost:
    """The real host: commands through sh, sysctls through /proc/sys (or where the node's is mounted: a
    container's own /proc/sys is read-only)."""

    def __init__(self, proc_sys=PROC_SYS):
        lean_sh.import_sh()  # here, so that no command's logged duration includes it
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
            proc = _start(argv, _in=streams[0], _out=streams[1], _err=streams[2], _return_cmd=True,
                          _preexec_fn=limit and functools.partial(_limit_writes, limit))
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

        proc = _start(argv, _tty_out=False, _out=on_line, _preexec_fn=die_with_parent)

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


def _start(argv, **options):
    """sh running argv in the background with `options`, any exit status taken; CommandFailed when the program
    is not on PATH."""
    import sh

    try:
        return sh.Command(argv[0])(*argv[1:], _bg=True, _bg_exc=False, _ok_code=range(256), **options)
    except sh.CommandNotFound:
        raise CommandFailed(f"{argv[0]} not found on PATH", "install the package that provides it") from None


def _limit_writes(limit):
    """In the child, before exec: no file it writes grows past `limit` bytes (its stdout and stderr are memory
    files). SIGXFSZ is ignored, as Python left it: a write past the limit fails, and ip goes on to its end."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _kill(proc, expired):
    expired.set()
    try:
        proc.signal(signal.SIGKILL)
    except ProcessLookupError:  # it finished just in time
        pass


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
