"""Opening the plugin's own files (state, claims, locks, the log), and every file its commands read from a conf
dir, a state dir or a log, so that nothing planted in their place can hang a call, exhaust its memory or
redirect a write: a FIFO, a device (/dev/zero), a directory, a socket, a symlink, another file's hard link, a
file or a directory too large to hold. What cannot be read so raises OSError, whose strerror says why and
filename where (why()), as the system's own errors do."""
import contextlib
import errno
import itertools
import os
import stat

MAX_BYTES = 1 << 20  # what a config, a record or a claim may be: the plugin's own cap on its stdin
MAX_ENTRIES = 100000  # names in one state directory: far more than a node has pods


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
        raise OSError(errno.EINVAL, "not a regular file", path)
    no_follow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, flags | no_follow | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if single_link and info.st_nlink != 1:
            raise OSError(errno.EMLINK, f"{info.st_nlink} hard links; refusing to write to it", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path, limit=MAX_BYTES, follow=False):
    """The content of a regular file (see open_regular), refused when larger than `limit` bytes."""
    fd = open_regular(path, os.O_RDONLY, follow=follow)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # a file that grows under the read is cut here too
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def read_text(path, limit=MAX_BYTES, follow=False):
    """read_bytes, decoded as UTF-8 (ValueError when it is not)."""
    return read_bytes(path, limit, follow).decode("utf-8")


def list_dir(top, *parts):
    """The names in directory top/PARTS..., where no part below `top` may be a symlink (a state dir's
    networks/NET linked elsewhere would have its files read, and GC's removals made, outside the state dir)
    nor anything but a directory; at most MAX_ENTRIES of them. FileNotFoundError when a part is missing."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, part in enumerate(parts, 1):
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                if isinstance(e, FileNotFoundError):
                    raise
                where = os.path.join(top, *parts[:depth])
                raise OSError(e.errno, "a symlink" if os.path.islink(where) else "not a directory", where) from None
            os.close(fd)
            fd = below
        with os.scandir(fd) as entries:
            names = [entry.name for entry in itertools.islice(entries, MAX_ENTRIES + 1)]
    finally:
        os.close(fd)
    if len(names) > MAX_ENTRIES:
        raise OSError(errno.EFBIG, f"more than {MAX_ENTRIES} entries", os.path.join(top, *parts))
    return names


def replace_whole(path, data):
    """Write `data` as the whole of file `path`: to a temporary name beside it (never through a symlink), then
    renamed over it, so that a reader finds the old content or the new, never a part."""
    temp = f"{path}.{os.getpid()}.tmp"
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # left by a killed writer that had our pid
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def why(error):
    """What an OSError says without its errno: 'PATH: not a regular file', 'PATH: No such file or directory'."""
    if error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return error.strerror or str(error)
