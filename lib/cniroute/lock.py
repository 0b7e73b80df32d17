"""A per-shim lock around host changes: flock(2), so the kernel releases it when a holder dies (even kill -9)."""
import contextlib
import fcntl
import os
import threading

from . import files
from .errors import IOFailure, TryAgainLater


@contextlib.contextmanager
def held(path, timeout, below=None):
    """`below`: the state dir the lock file is in, no directory under which is followed (files.open_dir)."""
    fd = _open(path, below)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            fd = -1
            fd = _Waiter.take(path, timeout, below)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing drops the lock


def _open(path, below):
    try:
        return files.open_regular(path, os.O_RDWR | os.O_CREAT, 0o600, below=below)
    except OSError as e:  # a planted symlink or FIFO, a read-only /run...
        raise IOFailure(f"cannot open the lock {path}", files.why(e)) from None


class _Waiter:
    """The wait for a busy lock, in the kernel, which wakes the waiters the moment it is released (polling left a
    released lock idle until some waiter's next try: 13% of the wall time of 64 ADDs at once). The wait is a
    helper thread's, so that it can end at the timeout from any thread, without signals.

    A thread blocked in flock cannot be called back, so one that timed out stays until the holder lets go. There
    is at most one per lock and process: a later caller (a long-running watcher's next pass) waits for the same
    thread, and the first caller still waiting when it gets the lock takes its descriptor, lock held. When no
    caller is left, it closes it, which drops the lock at once."""

    _pending = {}  # path -> the _Waiter still blocked on it
    _mutex = threading.Lock()

    def __init__(self, path, below):
        self.fd = _open(path, below)
        self.got = threading.Event()
        self.error = None
        self.callers = 0
        self.taken = False
        threading.Thread(target=self._wait, args=(path,), name=f"wait for {path}", daemon=True).start()

    @classmethod
    def take(cls, path, timeout, below):
        """A descriptor of `path` with the lock held, within `timeout` s; TryAgainLater else."""
        with cls._mutex:
            waiter = cls._pending.get(path)
            if waiter is None:
                waiter = cls._pending[path] = cls(path, below)
            waiter.callers += 1
        waiter.got.wait(timeout)
        with cls._mutex:
            waiter.callers -= 1
            if waiter.error is not None:
                raise IOFailure(f"cannot lock {path}", str(waiter.error))
            if waiter.got.is_set() and not waiter.taken:
                waiter.taken = True
                return waiter.fd
        raise TryAgainLater(f"lock {path} is busy", f"waited {timeout} s")

    def _wait(self, path):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as e:
            self.error = e
        with self._mutex:
            del self._pending[path]
            self.got.set()
            if self.callers == 0 or self.error is not None:  # nobody waits any more: let the lock go
                self.taken = True
                os.close(self.fd)
