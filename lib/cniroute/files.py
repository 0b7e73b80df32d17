"""Opening the plugin's own files (state, claims, locks, the log), and every file its commands read from a conf
dir, a state dir or a log, so that nothing planted in their place can hang a call, exhaust its memory or
redirect a write: a FIFO, a device (/dev/zero), a directory, a socket, a symlink, another file's hard link, a
file or a directory too large to hold. What cannot be read so raises OSError, whose strerror says why and
filename where (why()), as the system's own errors do.

Below a state dir (`below`: the top, which the config names and which may itself be a symlink) every
directory is opened from its parent's descriptor with O_NOFOLLOW, and files are read, written, renamed and
removed relative to the last one: a directory swapped for a symlink is refused, never followed, whenever the
swap happens."""
import contextlib
import errno
import itertools
import os
import stat

MAX_BYTES = 1 << 20  # what a config, a record or a claim may be: the plugin's own cap on its stdin
MAX_ENTRIES = 100000  # names in one state directory: far more than a node has pods


def open_regular(path, flags, mode=0o600, single_link=False, follow=False, below=None):
    """os.open for a regular file only, never blocking on open: OSError for anything else.

    A FIFO blocks a plain open until a peer appears, and opening a device runs its driver: both are looked at
    (lstat) before opening, and the open itself is O_NONBLOCK (no effect on regular files) and O_NOFOLLOW, so a
    swap in between fails instead of hanging. `single_link` also refuses a file with other hard links (a
    write would land in that other file too). `follow` follows symlinks (namespace paths like /proc/PID/ns/net
    are ones). `below`: a state dir the path is in, no directory under which is followed (open_dir)."""
    name = os.path.basename(path)
    with _directory_of(path, below) as dir_fd:
        target = path if dir_fd is None else name
        try:
            before = os.stat(target, dir_fd=dir_fd, follow_symlinks=follow)
        except FileNotFoundError:
            before = None
        if before is not None and not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        no_follow = 0 if follow else os.O_NOFOLLOW
        try:
            fd = os.open(target, flags | no_follow | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None
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


def read_bytes(path, limit=MAX_BYTES, follow=False, below=None):
    """The content of a regular file (see open_regular), refused when larger than `limit` bytes."""
    fd = open_regular(path, os.O_RDONLY, follow=follow, below=below)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # a file that grows under the read is cut here too
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def read_text(path, limit=MAX_BYTES, follow=False, below=None):
    """read_bytes, decoded as UTF-8 (ValueError when it is not)."""
    return read_bytes(path, limit, follow, below).decode("utf-8")


def list_dir(top, *parts):
    """The names in directory top/PARTS... (open_dir); at most MAX_ENTRIES of them."""
    fd = open_dir(top, *parts)
    try:
        with os.scandir(fd) as entries:
            names = [entry.name for entry in itertools.islice(entries, MAX_ENTRIES + 1)]
    finally:
        os.close(fd)
    if len(names) > MAX_ENTRIES:
        raise OSError(errno.EFBIG, f"more than {MAX_ENTRIES} entries", os.path.join(top, *parts))
    return names


def open_dir(top, *parts, create=False):
    """A descriptor of directory top/PARTS..., where no part below `top` may be a symlink (a state dir's
    networks/NET linked elsewhere would have its files read, written and removed outside the state dir) nor
    anything but a directory: OSError naming the part. FileNotFoundError when a part is missing, unless
    `create`: then the missing ones (top included) are made, private."""
    if create:
        os.makedirs(top, mode=0o700, exist_ok=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, part in enumerate(parts, 1):
            where = os.path.join(top, *parts[:depth])
            below = _open_subdirectory(fd, part, where, create)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_whole(top, parts, name, text, replace=True):
    """Write top/PARTS.../name whole: to a temporary name, then renamed into place (or, with replace=False,
    linked there unless something already is), the directories made as needed (open_dir)."""
    fd = open_dir(top, *parts, create=True)
    try:
        temp = f"{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=fd)  # left by a killed writer that had our pid
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        with os.fdopen(out, "w", encoding="utf-8") as f:
            f.write(text)
        if replace:
            os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            os.unlink(temp, dir_fd=fd)
    finally:
        os.close(fd)


def remove(top, parts, name):
    """Unlink top/PARTS.../name (open_dir); nothing to do when it, or a directory on the way, is missing."""
    try:
        fd = open_dir(top, *parts)
    except FileNotFoundError:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _open_subdirectory(fd, part, where, create):
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", where) from None
    except OSError as e:
        try:
            mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            mode = stat.S_IFDIR  # gone meanwhile: the open's own reason
        why = "a symlink" if stat.S_ISLNK(mode) else e.strerror if stat.S_ISDIR(mode) else "not a directory"
        raise OSError(e.errno, why, where) from None
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o700, dir_fd=fd)
    return _open_subdirectory(fd, part, where, create=False)


@contextlib.contextmanager
def _directory_of(path, below):
    """The descriptor of path's directory opened from `below` (open_dir), or None without `below`."""
    if below is None:
        yield None
        return
    relative = os.path.relpath(os.path.dirname(path), below)
    parts = [] if relative == "." else relative.split(os.sep)
    if parts[:1] == [os.pardir]:
        raise ValueError(f"{path} is not below {below}")
    fd = open_dir(below, *parts)
    try:
        yield fd
    finally:
        os.close(fd)


def why(error):
    """What an OSError says without its errno: 'PATH: not a regular file', 'PATH: No such file or directory'."""
    if error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return error.strerror or str(error)
