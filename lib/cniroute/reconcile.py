"""`route reconcile`: put back, from what ADD recorded, what the node's network lost under running pods.

    route reconcile [--state-dir /run/cni-route] [--log-file FILE|-] [--dry-run] [--watch [--interval 60]]

One pass covers every shim that an attachment record under the state dir names, of every network:
  - the shim, as ADD makes it (shim.ensure): created if missing (with its stable MAC), a bridge macvlan on its
    master with the master's MTU and addresses and the shim's sysctls, up. A device that only has the shim's
    name is left untouched and reported, and so is a missing master;
  - the pods' routes: the route of every address its attachment still owns (an address that IPAM has given
    to a newer pod is that pod's). A pod whose DEL has run has no record, so nothing of it comes back;
  - the shim's routeViaHost masquerade rule, when an attachment on it uses routeViaHost;
  - inside each running pod that owns its addresses and was made for another node than the node of now
    (its record's node view: the addresses the shim carries, the master's, the node's others), the routes ADD
    put there (pod_routes.heal), for the node as it is now: after the node's address changed, the on-link
    route to the new address, routeViaHost's routes through it and the reply paths, and no more route to the
    old one. Only in the namespace ADD named while it is still that pod's (recorded identity, the pod's
    addresses on its interface); records of older versions do not say, and their pods are left as they are.
    A pass on a node that changed nothing that concerns pods enters none.
Nothing is created without a record. Each shim is handled under its lock, the one ADD and DEL take, and its
records are read inside it. When the pass changed something, the host is read again, as CHECK reads it:
exit 0 when every shim is in shape, else 1 with what is still wrong. A dry run changes nothing, so it exits
1 with what it would repair.

Each shim's pass is one RECONCILE block of the replayable log (journal.py): to --log-file ('-': stderr),
else to the logFile of the configs its records came from, else to stderr. --watch: `watch` runs a pass whenever
watch.Watcher says one is due, and says only what is news (Watching).
"""
import argparse
import contextlib
import gc
import sys
import time
from collections import Counter, namedtuple

from . import interpreter, pod_routes, routes, shim, via_host
from .config import DEFAULT_LOG_MAX_BYTES, DEFAULT_STATE_DIR
from .errors import CNIError, DeviceMissing, HostNotReady, PodUnreachable, ShimConflict, UnsuitableInterpreter
from .figures import Figures
from .host import PROC_SYS, SystemHost
from .journal import Journal, deliver
from .node import Node
from .runner import Runner
from .store import Store
from .watch import Watcher

STDERR = "-"

# One shim's pass: what is still wrong (sentences), how many changes it made, its log block and where that goes,
# and its Tally.
Outcome = namedtuple("Outcome", "shim problems changes journal logs tally")


class Tally(namedtuple("Tally", "repairs errors not_entered attachments")):
    """What one shim's pass counted, each a Counter: repairs by kind (figures.REPAIRS), errors met by CNI code, pods
    that could not be entered by why (PodUnreachable.reason), attachments by network. The watcher's figures add
    them up."""

    __slots__ = ()

    @classmethod
    def empty(cls):
        return cls(Counter(), Counter(), Counter(), Counter())


DESCRIPTION = """\
Put back what the node's network lost under running pods, from what the plugin recorded when it attached them:
the shim, its copies of the node's addresses, each pod's route on the node, routeViaHost's masquerade rule, and
the routes the plugin made inside each running pod. For the operator of a node whose network changes under its
pods: a network manager that restarts, a DHCP renewal, a master that goes down and up, a flushed route table.

One pass covers every network recorded under the state dir, under the locks the plugin's own calls take, and
creates nothing that no record names. Exit 0 when everything is in shape after it, else 1 with what is still
wrong; --dry-run changes nothing and exits 1 with what it would repair. --watch stays running (the DaemonSet's
watcher, or a systemd unit): a pass whenever `ip monitor` sees the node's links, addresses or routes change,
and every --interval seconds. Each repair is logged as a block `route replay` can run again: to the log file
of the networks' configs, or to --log-file."""


def add_parser(sub):
    p = sub.add_parser("reconcile", help="put back the shims and pod routes the node lost (see docs/self-healing.md)",
                       description=DESCRIPTION)
    p.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                   help="the plugin's stateDir (default %(default)s)")
    p.add_argument("--log-file", metavar="FILE", help="log here ('-': stderr) instead of the logFile the networks' "
                                                      "configs name")
    p.add_argument("--dry-run", action="store_true", help="change nothing; exit 1 with what would be repaired")
    p.add_argument("--ip-timeout", metavar="SECONDS", type=_positive, default=10.0,
                   help="kill an ip that hangs (default %(default)s)")
    p.add_argument("--proc-sys", metavar="DIR", default=PROC_SYS,
                   help="where the node's /proc/sys is (a container's own is read-only; default %(default)s)")
    p.add_argument("--watch", action="store_true", help="stay running: repair on ip monitor events and every "
                                                        "--interval seconds; exit 0 on SIGTERM")
    p.add_argument("--interval", metavar="SECONDS", type=_positive, default=60.0,
                   help="--watch: seconds between full passes (default %(default)s)")
    p.add_argument("--metrics-address", metavar="HOST:PORT",
                   help="--watch: serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:10290; off "
                        "unless given; needs the prometheus-client package, docs/metrics.md)")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    if host is None:
        try:
            interpreter.require_packages()
        except UnsuitableInterpreter as e:
            say(str(e))
            return 1
        host = SystemHost(args.proc_sys)
    settings = dict(state_dir=args.state_dir, dry_run=args.dry_run, ip_timeout=args.ip_timeout)
    if args.watch:
        return watch(host, args.interval, args.log_file, args.metrics_address, **settings)
    skipped = []
    try:
        outcomes = run_pass(host, skipped=skipped, **settings)
    except OSError as e:  # the state dir cannot be read
        say(f"cannot read {args.state_dir}: {e}")
        return 1
    for line in skipped:
        say(line)
    for outcome in outcomes:
        if outcome.changes or outcome.problems:
            write_log(outcome, args.log_file)
        say(f"{outcome.shim}: " + describe(outcome))
    if not outcomes:
        say(f"nothing recorded under {args.state_dir}: nothing to do")
    return 1 if any(o.problems for o in outcomes) else 0


def watch(host, interval, log_file, metrics_address=None, **settings):
    """`--watch`: a pass whenever the watcher says one is due, until SIGTERM or SIGINT; exit status 0. Its
    figures go to the state dir (figures.py) and, with `metrics_address`, to Prometheus (metrics.py)."""
    # The launchers turn the cyclic collector off for a call of a few ms; a watcher lives for weeks, and every
    # ip it runs through sh leaves cycles (sh's command and process objects) that only the collector frees.
    gc.enable()
    watcher = Watcher(host, interval, say)
    figures = Figures(settings["state_dir"], interval, say, write=not settings.get("dry_run"))
    if metrics_address:
        from . import metrics  # prometheus-client: only a watcher asked to serve metrics needs it

        try:
            metrics.serve(metrics_address, figures)
        except (ImportError, OSError, ValueError) as e:
            say(f"cannot serve metrics on {metrics_address}: {e}")
            watcher.close()
            return 1
        say(f"metrics on http://{metrics_address}/metrics")
    with watcher.signals():
        try:
            Watching(host, watcher, log_file, figures, **settings).run()
        finally:
            watcher.close()
    say("stopped")
    return 0


class Watching:
    """The watcher's loop: passes when `watcher` (watch.Watcher) says one is due, and what of them is news
    said once: a shim's trouble again, or a part of the state dir still unreadable, is not."""

    def __init__(self, host, watcher, log_file, figures, **settings):
        self.host, self.watcher, self.log_file, self.figures, self.settings = host, watcher, log_file, figures, settings
        self.reported = {}  # shim -> the problems last reported for it
        self.skipped = set()  # what of the state dir the last pass could not read

    def run(self):
        first = True
        while self.watcher.pass_due():
            self.one_pass()
            if first:
                first = False
                say(f"watching {self.settings['state_dir']}: a pass on ip monitor events (pid "
                    f"{self.watcher.monitor_pid or '-'}) and every {self.watcher.interval:g} s")

    def one_pass(self):
        self.figures.pass_started(self.watcher.monitor_state())
        started = time.monotonic()
        skipped = []
        try:
            outcomes = run_pass(self.host, stopping=lambda: self.watcher.stopping, skipped=skipped, **self.settings)
        except OSError as e:  # the state dir cannot be read: say so, and try again at the next pass
            say(f"cannot read {self.settings['state_dir']}: {e}")
            outcomes = None
        self.figures.pass_ended(self.watcher.monitor_state(), outcomes, time.monotonic() - started,
                                self.watcher.due_in())
        if outcomes is None:
            return
        for line in skipped:
            if line not in self.skipped:  # said once, not every pass
                say(line)
        self.skipped = set(skipped)
        for outcome in outcomes:
            before = self.reported.get(outcome.shim, [])
            if outcome.changes or outcome.problems != before:  # the same trouble again is not news
                write_log(outcome, self.log_file)
                say(f"{outcome.shim}: " + describe(outcome))
        # Only the shims of this pass: one whose pods have all gone is forgotten (weeks of churn stay bounded).
        self.reported = {outcome.shim: outcome.problems for outcome in outcomes}


def run_pass(host, state_dir, dry_run=False, ip_timeout=10.0, stopping=lambda: False, skipped=None):
    """Reconcile every shim recorded under `state_dir`; its Outcome each. Stops early (between shims) once
    stopping(). What of the state dir cannot be read is left out, and said in `skipped` (Store.every_attachment)."""
    store = Store(state_dir, dry_run)
    listed = {}
    for record in store.every_attachment(skipped):
        listed.setdefault(record.shim, []).append(record)
    outcomes = []
    for shim_name, records in sorted(listed.items()):
        if stopping():
            break
        journal = Journal()
        journal.header.update(command="RECONCILE", shim=shim_name)
        runner = Runner(journal, timeout=ip_timeout, dry_run=dry_run, host=host)
        tally = Tally.empty()
        try:
            attached, problems = reconcile_shim(runner, store, shim_name, tally)
            records = attached or records
        except CNIError as e:  # an ip that failed or hung, a lock that stayed busy
            problems = [str(e)]
            tally.errors[e.code] += 1
        except Exception as e:  # a bug: say so, and let the other shims (and a watcher) go on
            problems = [f"internal error: {type(e).__name__}: {e}"]
            tally.errors[CNIError.code] += 1
        journal.header["network"] = ",".join(sorted({r.network for r in records}))
        for problem in problems:
            journal.comment(f"not in shape: {problem}")
        tally.repairs.update(runner.changes_by_kind)
        tally.attachments.update(r.network for r in records)
        outcomes.append(Outcome(shim_name, problems, runner.changes, journal, _logs(records), tally))
    return outcomes


def reconcile_shim(runner, store, shim_name, tally):
    """Repair one shim and its pods' routes; ([record] on it, [what is still wrong]), counted in `tally` (a
    Tally) too. A dry run takes no lock (it would create the lock file): it changes nothing, so it has nothing
    to keep apart."""
    with contextlib.nullcontext() if store.dry_run else store.shim_lock(shim_name):
        # Read inside the lock: a DEL that has run is never undone, one that is waiting runs after us.
        attached = store.records_on(shim_name)
        if not attached:
            return [], []
        masters = sorted({r.master for r in attached})
        if len(masters) > 1:
            return attached, [f"records name {' and '.join(masters)} as its master: left alone"]
        master = masters[0]
        selectors = attached[0].node_addresses  # networks that share a shim agree on it (docs/node-layouts.md)
        running = [r for r in attached if all(store.owner_of(p) == r.claimant for p in r.prefixes)]
        owned = [p for r in attached for p in r.prefixes if store.owner_of(p) == r.claimant]
        try:
            node = Node.observe(runner, routes_to=owned)  # the routes of the pods too: one ip process fewer
            master_link = shim.require_master(node, master)
            carried = node.shim_addresses(master, shim_name, selectors)
            with runner.counting("shim"):
                shim.ensure(runner, node, master, shim_name, carried)
        except (DeviceMissing, HostNotReady, ShimConflict) as e:
            tally.errors[e.code] += 1
            return attached, [str(e)]
        with runner.counting("node_route"):
            routes.restore(runner, owned, shim_name, node.routes_to)
        via = any(r.via_host for r in attached)
        if via:
            with contextlib.nullcontext() if store.dry_run else store.nft_lock(), runner.counting("masquerade_rule"):
                via_host.ensure_masquerade(runner, shim_name)
        with runner.counting("pod_side"):
            pods = _heal_pods(runner, store, running, node, carried, master_link, tally)
        if not runner.changes:
            return attached, pods  # what was read is in shape
        node = Node.observe(runner)
        addresses = node.shim_addresses(master, shim_name, selectors) if master in node.links else []
        found = shim.problems(runner, node, master, shim_name, addresses)
        found += routes.problems(runner, owned, shim_name)
        if via and not via_host.has_masquerade(runner, shim_name):
            found.append(f"no masquerade rule for {shim_name} in nft table inet cni_route")
        return attached, found + pods


def _heal_pods(runner, store, attached, node, carried, master, tally):
    """Put back the own routes of every running pod made for another node than this one (pod_routes.heal) and
    record what they are now; what could not be done, per pod. `attached`: the records that own all their
    addresses."""
    problems = []
    view = pod_routes.node_view(carried, master, node.links, attached[0].shim if attached else None)
    for record in attached:
        try:
            if record.node_view == view:  # made for the node as it is: nothing to enter the pod for
                pod_routes.still_there(runner, record)  # (what can be told without entering it, is told)
                continue
            healed = pod_routes.heal(runner, record, node, carried, master)
        except PodUnreachable as e:  # said, once per pass: a pass that could not look is not in shape
            problems.append(f"pod {record.owner}: {e}")
            tally.not_entered[e.reason] += 1
            continue
        except CNIError as e:  # its namespace went meanwhile, no node address of a family...
            problems.append(f"pod {record.owner}: {e}")
            tally.not_entered["failed"] += 1
            tally.errors[e.code] += 1
            continue
        if healed.to_json() != record.to_json():
            store.save(healed)
    return problems


def _logs(records):
    """Where a shim's block goes: the (logFile, logMaxBytes) of its records' configs; none named: stderr."""
    named = sorted({(r.log_file, r.log_max_bytes or DEFAULT_LOG_MAX_BYTES) for r in records if r.log_file})
    return named or [(None, None)]


def write_log(outcome, log_file=None):
    """Append the shim's block to --log-file, or to every log its records name."""
    text = outcome.journal.text()
    if log_file:
        deliver(text, None if log_file == STDERR else log_file, DEFAULT_LOG_MAX_BYTES)
        return
    for path, max_bytes in outcome.logs:
        deliver(text, path, max_bytes)


def describe(outcome):
    """One line about one shim's pass."""
    done = f"{outcome.changes} change{'s' if outcome.changes != 1 else ''}"
    if outcome.problems:
        return f"NOT in shape after {done}: " + "; ".join(outcome.problems)
    return f"repaired ({done})" if outcome.changes else "in shape"


def say(text):
    sys.stderr.write(f"route reconcile: {text}\n")
    sys.stderr.flush()


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value
