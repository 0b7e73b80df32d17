"""`route status`: what the watcher has done and whether it is well, read from what it left under the state dir
(figures.py), for a person (text or --json) and for the DaemonSet's probes (--live, --ready).

--ready answers as the plugin's STATUS would, for every shim an attachment record under the state dir names
(plugin.require_available): it reads the node through the runner, with a journal that is never written, and
changes nothing.
"""
import datetime
import json
import sys
import time

from . import figures
from .config import DEFAULT_STATE_DIR
from .errors import CNIError
from .journal import Journal
from .plugin import require_available
from .runner import PROC_SYS, Runner, SystemHost
from .store import Store

STALL = 120.0  # seconds without progress before --live fails, by default (a slow node's pass takes a few)

DESCRIPTION = """\
Show what `route reconcile --watch` has done on this node since it started, from what it leaves in the state
dir after every pass: its passes and how long they took, its repairs by kind, the errors it met by CNI code,
the attachments by network and the pods it could not enter. For the operator who wants these figures without
Prometheus (the same figures are served with --metrics-address, see the manual).

As a probe: --live exits 1 when the watcher has stopped making progress (a pass that hangs, an ip monitor left
dead, a loop that missed its next pass by more than --stall seconds); --ready exits 1 when this node cannot
take pods now on a network it has attachments of, as the plugin's STATUS answers (the master missing or down,
the shim's name taken, routeViaHost without forwarding). Both print one line."""


def add_parser(sub):
    p = sub.add_parser("status", help="what the watcher has done, and whether it and the node are well (see "
                                      "docs/metrics.md)", description=DESCRIPTION)
    p.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                   help="the state dir the watcher watches (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    probe = p.add_mutually_exclusive_group()
    probe.add_argument("--live", action="store_true", help="exit 1 unless the watcher makes progress")
    probe.add_argument("--ready", action="store_true", help="exit 1 unless the node can take pods now")
    p.add_argument("--stall", metavar="SECONDS", type=float, default=STALL,
                   help="--live: how long without progress is too long (default %(default)s)")
    p.add_argument("--proc-sys", metavar="DIR", default=PROC_SYS,
                   help="--ready: where the node's /proc/sys is (default %(default)s)")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    if args.ready:
        return ready(args.state_dir, host or SystemHost(args.proc_sys))
    try:
        doc = figures.read(args.state_dir)
    except (OSError, ValueError) as e:
        print(f"route status: no watcher's figures under {args.state_dir}: {e}", file=sys.stderr)
        return 1
    stalled = figures.liveness(doc, args.stall)
    if args.live:
        print(f"not live: {stalled}" if stalled else "live: " + _progress(doc))
    elif args.json:
        print(json.dumps({**doc, "live": stalled is None, "stalled": stalled}, indent=2, sort_keys=True))
    else:
        print(render_text(doc, stalled), end="")
    return 1 if stalled else 0


def ready(state_dir, host):
    """--ready: one line; 0 when every recorded shim can take pods (or none is recorded), else 1."""
    recorded = {}
    try:
        for record in Store(state_dir, dry_run=True).every_attachment():
            recorded.setdefault(record.shim, []).append(record)
    except OSError as e:
        print(f"not ready: cannot read {state_dir}: {e}")
        return 1
    runner = Runner(Journal(), dry_run=True, host=host)  # its journal is never written
    unavailable = []
    for shim_name, records in sorted(recorded.items()):
        cidrs = sorted({route.dst for record in records for route in record.via_host})
        try:  # networks that share a shim agree on its master and node addresses (docs/node-layouts.md)
            require_available(runner, records[0].master, shim_name, cidrs, records[0].node_addresses)
        except CNIError as e:
            networks = ", ".join(sorted({record.network for record in records}))
            unavailable.append(f"{networks} on {shim_name}: {e}")
    if unavailable:
        print("not ready: " + "; ".join(unavailable))
        return 1
    print(f"ready: {len(recorded)} shim{'s' if len(recorded) != 1 else ''} can take pods" if recorded else
          f"ready: no attachment recorded under {state_dir} yet")
    return 0


def render_text(doc, stalled):
    now = time.time()
    passes = doc["passes"]
    total = sum(passes.values())
    lines = [f"watcher: pid {doc['pid']}, running for {_duration(now - doc['started'])}, a full pass every "
             f"{doc['interval']:g} s; " + (f"NOT live: {stalled}" if stalled else "live: " + _progress(doc))]
    monitor = doc["monitor"]
    lines.append("ip monitor: " + (f"pid {monitor['pid']}" if monitor["pid"] else "not running") +
                 f", started again {monitor['restarts']} time{'s' if monitor['restarts'] != 1 else ''}")
    mean = doc["pass_seconds"]["sum"] / total if total else 0.0
    lines.append(f"passes: {total} ({_counts(passes, figures.RESULTS)}), {mean:.3f} s on average")
    last = doc["last_pass"]
    if last:
        lines.append(f"last pass: {_stamp(last['at'])} ({_duration(now - last['at'])} ago), {last['seconds']:.3f} s, "
                     f"{last['shims']} shim{'s' if last['shims'] != 1 else ''}, {last['result'].replace('_', ' ')}")
        lines += [f"  not in shape: {problem}" for problem in last["problems"]]
    lines.append(f"repairs: {_counts(doc['repairs'], figures.REPAIRS)}")
    lines.append(f"errors by CNI code: {_counts(doc['errors']) or 'none'}")
    lines.append(f"attachments at the last pass: {_counts(doc['attachments']) or 'none'}")
    lines.append(f"pods not entered at the last pass: {_counts(doc['not_entered']) or 'none'}")
    return "".join(line + "\n" for line in lines)


def _progress(doc):
    loop, now = doc["loop"], figures.clock()
    if loop["state"] == "idle":
        return f"idle for {_duration(now - loop['since'])}, next full pass within {_duration(loop['next_by'] - now)}"
    return f"a pass running for {_duration(now - loop['since'])}"


def _counts(counts, keys=()):
    return ", ".join(f"{key} {counts.get(key, 0)}" for key in [*keys, *sorted(k for k in counts if k not in keys)])


def _duration(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _stamp(unix):
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
