"""`route replay LOG`: re-run the commands of a route log (journal.py), as a person debugging a node does.

Only lines of the shapes the plugin itself logs are run; --container, --command and --since choose blocks,
--dry-run only prints them.
"""
import argparse
import datetime
import re
import shlex
import sys

from .journal import Journal, NotARouteLog, parse_log
from .runner import ANY_STATUS, Runner

# Replay runs only lines of the shapes the plugin itself logs; a log is root's file, but a line that could
# do anything else (ip -batch FILE, ip netns exec, nsenter ... sh, nft -f, sysctl of kernel/*) is refused.
_IP_CHANGE = re.compile(r"(link (add|set)|addr (add|del)|route (replace|del)|neigh del) \S")
_NFT_CHANGE = re.compile(r"(add|delete) (table|chain|set|rule) inet cni_route\b")
_SYSCTL = re.compile(r"net/ipv[46]/conf/(?!all/|default/)[A-Za-z0-9_.-]{1,15}/\w+=\w+\Z")  # one interface's


def select(blocks, container=None, command=None, since=None):
    return [b for b in blocks
            if (container is None or b.fields.get("container") == container)
            and (command is None or b.command == command)
            and (since is None or _parse_time(b.time) >= since)]


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
                out.write("#   refused: not a command this plugin logs (ip link/addr/route/neigh, nsenter --net=..."
                          " ip route, nft on table inet cni_route, sysctl -w net/...)\n")
                failed += 1
            elif not dry_run:
                done = runner.execute(argv, ok=ANY_STATUS)
                out.write(f"#   exit {done.status}\n" + "".join(f"#   {e}\n" for e in done.err.splitlines()))
                failed += done.status != 0
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


def add_parser(sub):
    p = sub.add_parser("replay", help="re-run the ip commands of a route log (see README, Debugging)")
    p.add_argument("--container", help="only blocks of this container ID")
    p.add_argument("--command", choices=["ADD", "DEL", "CHECK", "GC", "STATUS", "RECONCILE"],
                   help="only blocks of this verb (RECONCILE: route reconcile's)")
    p.add_argument("--since", type=_parse_time, help="only blocks at or after this UTC time (ISO 8601)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--keep-going", action="store_true", help="continue after a failing command")
    p.add_argument("logfile")
    p.set_defaults(handler=handle)


def handle(args, host=None):
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
