"""`route replay LOG`: re-run the commands of a route log (journal.py), as a person debugging a node does.

Only lines of the shapes the plugin itself logs are run; --container, --command and --since choose blocks,
--dry-run only prints them.
"""
import argparse
import datetime
import functools
import ipaddress
import re
import shlex
import sys

from . import config, files, iproute, nft, shim
from .journal import Journal, NotARouteLog, parse_log
from .runner import ANY_STATUS, Runner

# Replay runs only lines of the shapes the plugin itself logs; a log is root's file, but a line that could
# do anything else (ip -batch FILE, ip netns exec, nsenter ... sh, nft -f, nft's own `;`, a global sysctl) is
# refused. The shapes are the plugin's own argv builders called with placeholders, so they cannot drift from
# what it logs; a line must match one word for word, each placeholder with a value of its kind.
_KINDS = {
    "<ifname>": lambda v: bool(config.IFNAME.match(v)) and v not in ("all", "default"),  # (conf/all, conf/default)
    "<pod-ifname>": config.is_kernel_ifname,  # a pod's other interface, in its reply table (an ip argument only)
    "<cidr>": lambda v: "/" in v and _parses(ipaddress.ip_interface, v),
    "<address>": lambda v: _parses(ipaddress.ip_address, v),
    "<number>": lambda v: v.isascii() and v.isdigit() and len(v) <= 10,
    "<bit>": lambda v: v in ("0", "1"),
    "<mac>": lambda v: bool(re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", v)),
}
MAX_LOG = 256 << 20  # bytes of a log replay reads (logFile rotates at logMaxBytes, default 10 MiB)
_PLACEHOLDER = re.compile("|".join(map(re.escape, _KINDS)))


def _parses(parse, text):
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _shapes():
    """{program: [argv templates]} of every change the plugin logs."""
    i, c, a, n, m = "<ifname>", "<cidr>", "<address>", "<number>", "<mac>"
    ip = [iproute.add_shim(i, i), iproute.add_shim(i, i, m), iproute.set_link_up(i), iproute.set_link_mtu(i, n),
          iproute.replace_route(c, i), iproute.delete_route(c, i), iproute.add_address(c, i, ipv6=False),
          iproute.add_address(c, i, ipv6=True), iproute.delete_address(c, i), iproute.delete_neighbour(a, i)]
    pod = [iproute.replace_gateway_route(c, a, i), iproute.delete_gateway_route(c, a, i),  # inside the pod
           iproute.replace_route(c, i), iproute.delete_route(c, i)]  # (on-link routes to node addresses)
    # reply tables (one route deleted at a time: as older logs have it)
    pod += [build(n, c, gateway, "<pod-ifname>", onlink, metric)
            for build in (iproute.replace_table_route, iproute.delete_table_route)
            for gateway, onlink in ((None, False), (a, False), (a, True)) for metric in (None, n)]
    pod += [[*family, *build(a, n, n)] for build in (iproute.add_rule, iproute.delete_rule) for family in ([], ["-6"])]
    pod += [[*family, *iproute.flush_table(n)] for family in ([], ["-6"])]  # DEL: route's routes of a reply table
    nft_ = [nft.add_table(), nft.add_chain(), *(nft.add_set(p) for p in nft.PROTOS),
            *(nft.add_masquerade(i, p) for p in nft.PROTOS), nft.delete_rule(n), nft.delete_table()]
    sysctl = [[f"{key.format(i)}={value}"] for key, value in shim.SHIM_SYSCTLS]
    sysctl += [[f"{key.format(i)}=<bit>"] for key in shim.MASTER_SYSCTLS]
    # as older logs have them: add_shim without `name`, and before that without the stable MAC; the single
    # masquerade rule per shim (`ct status dnat`) from before the rules per family
    ip += [["link", "add", i, "link", i, *mac, "type", "macvlan", "mode", "bridge"] for mac in ([], ["address", m])]
    nft_.append(["add", "rule", *nft.TABLE, nft.CHAIN, "iifname", f'"{i}"', "ct", "status", "dnat", "masquerade",
                 "comment", f'"{i}"'])
    return {"ip": [["ip", *t] for t in ip], "nsenter": [["ip", *t] for t in pod], "nft": [["nft", *t] for t in nft_],
            "sysctl": [["sysctl", "-w", *t] for t in sysctl]}


def _word_pattern(template):
    """A template word as a regex whose groups are its placeholders, and their kinds."""
    kinds = _PLACEHOLDER.findall(template)
    parts = _PLACEHOLDER.split(template)
    pattern = re.escape(parts[0]) + "".join("(.+)" + re.escape(part) for part in parts[1:])
    return re.compile(pattern + r"\Z", re.DOTALL), kinds


@functools.cache
def _patterns():
    """_shapes() as word patterns, made on first use."""
    return {program: [[_word_pattern(w) for w in t] for t in templates] for program, templates in _shapes().items()}


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
                          " ip route/rule, nft on table inet cni_route, sysctl -w net/...)\n")
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
    if argv[:1] == ["nsenter"]:
        # The pod's namespace, by any absolute path (as CNI_NETNS names it): nsenter only opens it.
        if len(argv) < 2 or not argv[1].startswith("--net=/") or "\0" in argv[1]:
            return None
        return argv if _matches(argv[2:], _patterns()["nsenter"]) else None
    return argv if argv and _matches(argv, _patterns().get(argv[0], ())) else None


def _matches(argv, shapes):
    for shape in shapes:
        if len(shape) == len(argv) and all(_word_matches(word, *pattern) for word, pattern in zip(argv, shape)):
            return True
    return False


def _word_matches(word, pattern, kinds):
    match = pattern.match(word)
    return bool(match) and all(_KINDS[kind](value) for kind, value in zip(kinds, match.groups()))


DESCRIPTION = """\
Run the commands of a route log again, as a person debugging a node does: the blocks that the plugin's calls
and `route reconcile` appended to their logFile, each the ip, nft and sysctl commands of one call. Only lines
of the shapes the plugin itself logs are run, anything else in the file is refused. --container, --command and
--since choose the blocks; --dry-run only prints their commands. Exit 0 when every command ran as logged."""


def add_parser(sub):
    p = sub.add_parser("replay", help="re-run the ip commands of a route log (see docs/debugging.md)",
                       description=DESCRIPTION)
    p.add_argument("--container", help="only blocks of this container ID")
    p.add_argument("--command", choices=["ADD", "DEL", "CHECK", "GC", "STATUS", "RECONCILE"],
                   help="only blocks of this verb (RECONCILE: route reconcile's)")
    p.add_argument("--since", type=_parse_time, help="only blocks at or after this UTC time (ISO 8601)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--keep-going", action="store_true", help="continue after a failing command")
    p.add_argument("logfile", help="a log the plugin or route reconcile wrote (a network's logFile)")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    try:  # a regular file, never waited for, of at most MAX_LOG bytes; its lines end at \n only (journal.lines)
        blocks = parse_log(files.read_bytes(args.logfile, MAX_LOG, follow=True).decode("utf-8", "replace"))
    except (OSError, NotARouteLog) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        sys.stderr.write(f"route replay: refusing {args.logfile}: {reason}\n")
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
