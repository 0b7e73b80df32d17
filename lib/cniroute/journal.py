"""The replayable log: one block per plugin call, written and read here and nowhere else.

A block is a POSIX sh script. Its first line is the block header, `# == route VERSION | TIME | VERB | pid PID`,
then `# key: value` fields (container, ifname, netns, network, cniVersion; shim for `route reconcile`'s
RECONCILE blocks), then what the call did: changes as plain shell lines (shlex-quoted, exactly as run), each
followed by a comment with its exit status, duration and stderr; reads and everything else only as comments.
`sh LOG` re-applies every change; `route replay` (replay.py) parses blocks with `parse_log` and runs their
lines one by one.

Blocks are appended to `logFile` with one O_APPEND write under flock (`append_block`), or go to stderr
(`deliver` chooses).

A line ends at "\n" and nowhere else, for the reader here as for sh. The writer still keeps every character
that str.splitlines() breaks on out of the header's values (escaped) and out of commands (refused), so that
no tool that splits lines more eagerly can read a value as a line of its own.
"""
import fcntl
import os
import re
import shlex
import sys
import time
from collections import namedtuple

from . import __version__, files

BLOCK_START = "# == route "
HEADER_FIELDS = ("container", "ifname", "netns", "network", "cniVersion", "shim")
_START = re.compile(re.escape(BLOCK_START) + r"(\S+) \| (\S+) \| (\S+) \| pid (\d+)\Z")
_FIELD = re.compile(r"# (\w+): (.*)\Z")
_OUTCOME = re.compile(r"# exit (\S+) in \d+\.\d ms\Z")


def start_line(version, stamp, verb, pid):
    """The first line of a block."""
    return f"{BLOCK_START}{version} | {stamp} | {verb} | pid {pid}"


def outcome_line(status, milliseconds):
    """The comment after a command: how it ended and how long it took."""
    return f"# exit {status} in {milliseconds:.1f} ms"


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
        self.lines.append(outcome_line(status, seconds * 1000))
        self.lines.extend("#   " + line for line in stderr.splitlines())

    def text(self):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.started)) + f".{int(self.started % 1 * 1000):03d}Z"
        head = [start_line(__version__, stamp, _one_line(self.header.get("command", "-")), os.getpid())]
        head += [f"# {key}: {_one_line(self.header[key])}" for key in HEADER_FIELDS if key in self.header]
        return "".join(line + "\n" for line in head + self.lines)


# Every character str.splitlines() breaks on, with its escape: \n \r \v \f, the separators \x1c-\x1e, NEL,
# LINE SEPARATOR and PARAGRAPH SEPARATOR.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPES = {ord("\\"): "\\\\", **{ord(c): repr(c)[1:-1] for c in LINE_BREAKS}}


def _one_line(value):
    """A header value on one line whatever it holds (it comes from the environment or the config)."""
    return str(value).translate(_ESCAPES)


def lines(text):
    """The lines of a log, split as sh splits them: at "\n" only."""
    return text.split("\n")


class Block(namedtuple("Block", "version time command pid fields lines")):
    """One parsed block: its header, its `# key: value` fields (dict), its shell lines in order (list)."""

    __slots__ = ()


class NotARouteLog(Exception):
    pass


def parse_log(text):
    """The blocks of a route log. Anything before the first block header means it is not one."""
    blocks = []
    for number, line in enumerate(lines(text), 1):
        start = _START.match(line)
        if start:
            blocks.append(Block(start[1], start[2], start[3], int(start[4]), {}, []))
        elif not blocks:
            if line.strip():
                raise NotARouteLog(f"line {number} is not a route log block header: {line[:80]!r}")
        elif not line.startswith("#"):
            if line.strip():
                blocks[-1].lines.append(line)
        elif not blocks[-1].lines and (header := _FIELD.match(line)) and header[1] in HEADER_FIELDS:
            blocks[-1].fields[header[1]] = header[2]
    if not blocks:
        raise NotARouteLog("no route log block in it")
    return blocks


def without_variables(text):
    """The log with what differs from run to run (version, time, pid, durations) replaced by placeholders."""
    kept = []
    for line in lines(text):
        start, outcome = _START.match(line), _OUTCOME.match(line)
        if start:
            line = start_line("VERSION", "TIME", start[3], "PID")
        elif outcome:
            line = f"# exit {outcome[1]} in N ms"
        kept.append(line)
    return "\n".join(kept)


def deliver(text, path=None, max_bytes=None):
    """Append a block to the log at `path`, or write it to stderr (no path). A log that cannot be written never
    fails the caller: the block goes to stderr with the reason."""
    if path:
        try:
            append_block(path, text, max_bytes)
            return
        except OSError as e:
            sys.stderr.write(f"route: cannot write log {path}: {e}\n")
    sys.stderr.write(text)


def append_block(path, text, max_bytes):
    """Append one block to the log with a single O_APPEND write, rotating to PATH.1 past max_bytes.

    The file is created 0600 and must be a regular file with no other hard link, never reached through a
    symlink, and never waited for (a FIFO in its place is refused: see files.open_regular). It is written
    under flock, so that blocks of concurrent invocations never interleave and only one of them rotates; a
    write cut short (a full disk) is taken back, so the next block still starts on a line of its own.
    """
    data = text.encode("utf-8", "replace")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    for _ in range(5):  # another invocation may rotate the file between our open and our lock
        fd = files.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600, single_link=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                if os.stat(path, follow_symlinks=False).st_ino != mine.st_ino:
                    continue
            except FileNotFoundError:
                continue
            if mine.st_size and mine.st_size + len(data) > max_bytes:
                os.replace(path, path + ".1")
                continue
            try:
                written = os.write(fd, data)
            except OSError:
                os.ftruncate(fd, mine.st_size)
                raise
            if written != len(data):
                os.ftruncate(fd, mine.st_size)
                raise OSError(f"only {written} of {len(data)} bytes could be written to {path}")
            return
        finally:
            os.close(fd)
    raise OSError(f"{path} kept being rotated under us")
