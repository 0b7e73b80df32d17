"""A per-shim lock around host changes: flock(2), so the kernel releases it when a holder dies (even kill -9)."""
import contextlib
import fcntl
import os
import time

from . import files
from .errors import IOFailure, TryAgainLater


@contextlib.contextmanager
def held(path, timeout):
    try:
        fd = files.open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:  # a planted symlink or FIFO, a read-only /run...
        raise IOFailure(f"cannot open the lock {path}", str(e)) from None
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TryAgainLater(f"lock {path} is busy", f"waited {timeout} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        yield
    finally:
        os.close(fd)  # closing drops the lock
