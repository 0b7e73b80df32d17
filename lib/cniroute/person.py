"""What a person runs by hand: `route --version`, `route replay`, and `route install`/`uninstall` (install.py)."""
import argparse
import datetime
import re
import shlex
import sys
from dataclasses import dataclass, field

from . import SUPPORTED_VERSIONS, __version__, install, interpreter
from .errors import UnsuitableInterpreter
from .runner import BLOCK_START, HEADER_FIELDS, Journal, Runner

# Replay runs only lines of the shapes the plugin itself logs; a log is root's file, but a line that could
# do anything else (ip -batch FILE, ip netns exec, nsenter ... sh, nft -f, sysctl of kernel/*) is refused.
_IP_CHANGE = re.compile(r"(link (add|set)|addr (add|del)|route (replace|del)) \S")
_NFT_CHANGE = re.compile(r"(add|delete) (table|chain|set|rule) inet cni_route\b")
_SYSCTL = re.compile(r"net/ipv[46]/conf/(?!all/|default/)[A-Za-z0-9_.-]{1,15}/\w+=\w+\Z")  # one interface's
_START = re.compile(re.escape(BLOCK_START) + r"(\S+) \| (\S+) \| (\S+) \| pid (\d+)\Z")
_FIELD = re.compile(r"# (\w+): (.*)\Z")


@dataclass
class Block:
    version: str
    time: str
    command: str
    pid: int
    fields: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)  # shell lines, in order

    @property
    def when(self):
        return _parse_time(self.time)


class NotARouteLog(Exception):
    pass


def parse_log(text):
    """The blocks of a route log. Anything before the first block header means it is not one."""
    blocks = []
    for number, line in enumerate(text.splitlines(), 1):
        start = _START.match(line)
        if start:
            blocks.append(Block(start[1], start[2], start[3], int(start[4])))
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


def select(blocks, container=None, command=None, since=None):
    return [b for b in blocks
            if (container is None or b.fields.get("container") == container)
            and (command is None or b.command == command)
            and (since is None or b.when >= since)]


def replay(blocks, out, dry_run=False, keep_going=False, host=None, timeout=10.0):
    """Print and (unless dry_run) run every line of the blocks; return the number that failed."""
    runner = Runner(Journal(), timeout=timeout, host=host)
    failed = 0
    for block in blocks:
        out.write(f"# {block.time} {block.command} container={block.fields.get('container', '-')}"
                  f" network={block.fields.get('network', '-')} (pid {block.pid})\n")
        for line in block.lines:
            out.write(line + "\n")
            argv = replayable(line)
            if argv is None:
                out.write("#   refused: not a command this plugin logs (ip link/addr/route, nsenter --net=... ip"
                          " route, nft on table inet cni_route, sysctl -w net/...)\n")
                failed += 1
            elif not dry_run:
                status, err = runner.run_logged(argv)
                out.write(f"#   exit {status}\n" + "".join(f"#   {e}\n" for e in err.splitlines()))
                failed += status != 0
            out.flush()
            if failed and not keep_going:
                out.write("# stopped at the first failure (--keep-going continues)\n")
                return failed
    return failed


def replayable(line):
    """The argv of a log line if it has a shape the plugin logs, else None."""
    try:
        argv = shlex.split(line)
    except ValueError:
        return None
    words = argv[2:] if argv[:1] == ["nsenter"] and argv[1:2] and argv[1].startswith("--net=/") else argv
    if words[:1] == ["ip"] and _IP_CHANGE.match(shlex.join(words[1:])):
        return argv if words is argv or words[1] == "route" else None
    if argv[:1] == ["nft"] and _NFT_CHANGE.match(shlex.join(argv[1:])):
        return argv
    if argv[:2] == ["sysctl", "-w"] and len(argv) == 3 and _SYSCTL.match(argv[2]):
        return argv
    return None


def main(argv, host=None):
    parser = argparse.ArgumentParser(prog="route", description="The route CNI plugin, run by hand.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="verb")
    rp = sub.add_parser("replay", help="re-run the ip commands of a route log (see README, Debugging)")
    rp.add_argument("--container", help="only blocks of this container ID")
    rp.add_argument("--command", choices=["ADD", "DEL", "CHECK", "GC", "STATUS"], help="only blocks of this verb")
    rp.add_argument("--since", type=_parse_time, help="only blocks at or after this UTC time (ISO 8601)")
    rp.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    rp.add_argument("--keep-going", action="store_true", help="continue after a failing command")
    rp.add_argument("logfile")
    install.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.version:
        print(f"route {__version__} (CNI {', '.join(SUPPORTED_VERSIONS)}; python {sys.version.split()[0]})")
        print(install.dependencies_line())
        try:
            interpreter.require_packages()
        except UnsuitableInterpreter as e:
            print(f"route cannot run as a CNI plugin here (code {e.code}): {e}", file=sys.stderr)
            return 1
        return 0
    if args.verb in install.VERBS:
        return install.main(args)
    if args.verb != "replay":
        parser.print_help(sys.stderr)
        return 2
    try:
        with open(args.logfile, encoding="utf-8", errors="replace") as f:
            blocks = parse_log(f.read())
    except (OSError, NotARouteLog) as e:
        sys.stderr.write(f"route replay: refusing {args.logfile}: {e}\n")
        return 2
    chosen = select(blocks, args.container, args.command, args.since)
    if not chosen:
        sys.stderr.write("route replay: no block matches\n")
        return 1
    return 1 if replay(chosen, sys.stdout, args.dry_run, args.keep_going, host) else 0


def _parse_time(text):
    """ISO 8601 in UTC, with or without the trailing Z and fractions: '2026-11-28T06:18', '...:18.298Z'."""
    try:
        moment = datetime.datetime.fromisoformat(text.rstrip("Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment.replace(tzinfo=None)
