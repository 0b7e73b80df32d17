"""Opening the plugin's own files (state, claims, locks, the log) so that nothing planted in their place can
hang a call or redirect a write: a FIFO, a device, a directory, a symlink, another file's hard link."""
import os
import stat


def open_regular(path, flags, mode=0o600, single_link=False, follow=False):
    """os.open for a regular file only, never blocking on open: OSError for anything else.

    A FIFO blocks a plain open until a peer appears, and opening a device runs its driver: both are looked at
    (lstat) before opening, and the open itself is O_NONBLOCK (no effect on regular files) and O_NOFOLLOW, so a
    swap in between fails instead of hanging. `single_link` also refuses a file with other hard links (a
    write would land in that other file too). `follow` follows symlinks (namespace paths like /proc/PID/ns/net
    are ones)."""
    try:
        before = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        before = None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise OSError(f"{path} is not a regular file")
    no_follow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, flags | no_follow | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if single_link and info.st_nlink != 1:
            raise OSError(f"{path} has {info.st_nlink} hard links; refusing to write to it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(path):
    """The content of a regular file (see open_regular), decoded as UTF-8."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8")
