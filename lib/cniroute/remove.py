"""`route remove`: take route off a node, leaving it as it was before route's first ADD (DESCRIPTION). Shims are
found from the records and from the locks (a shim stays after its last pod's DEL, its lock file too); each is
handled under its lock, the one ADD and DEL take. The commands go to stderr as a replayable REMOVE block."""
import argparse
import contextlib
import os
import sys

from . import files, iproute, nft, pod_routes, routes, shim
from .config import DEFAULT_STATE_DIR
from .errors import CNIError
from .journal import Journal, deliver
from .node import Node
from .runner import Runner, SystemHost
from .store import Store

LAYOUT = ("networks", "ips", "locks")  # what route keeps in its state dir (store.py); nothing else is removed
SHIM_LOCK = "shim."  # locks/shim.NAME: every shim a call ever changed, also after its last pod's DEL

DESCRIPTION = """\
Take route off this node: inside each pod that still runs, the routes and reply paths route put there (as its
DEL would); on the node, route's routes (protocol 201) on each shim and the shims route made (a device it only
adopted stays); the nft table inet cni_route; the state dir (records, address claims, locks, and the directory
itself when nothing else is in it); with --plugin, the plugin file, if it is a route build. For the person who
removes route from a node, after taking route out of the networks' configs and deleting the DaemonSet.

Refused, changing nothing, while a record names a pod that still runs: that pod's DEL is still to come. Delete
those pods first, or give --force: then their routes go too, and the plugin file stays all the same, because a
pod whose DEL finds no plugin stays Terminating (run it again once they are gone). --dry-run says what it would
do and changes nothing; the commands are printed on stderr, as a block `route replay` can read."""


def add_parser(sub):
    p = sub.add_parser("remove", help="take route off this node: pods' and host routes, shims, nft table, state",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                   help="the plugin's stateDir (default %(default)s)")
    p.add_argument("--plugin", metavar="FILE", help="also remove this plugin file (e.g. /opt/cni/bin/route)")
    p.add_argument("--force", action="store_true", help="also while pods that route attached still run")
    p.add_argument("--dry-run", action="store_true", help="say what it would do; change nothing")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    journal = Journal()
    journal.header["command"] = "REMOVE"
    runner = Runner(journal, dry_run=args.dry_run, host=host or SystemHost())
    skipped = []
    try:
        store = Store(args.state_dir, args.dry_run)
        recorded = store.every_attachment(skipped)
        running = [r for r in recorded if runs(runner, r)]
        if running and not args.force:
            say("refused, nothing changed: pods that route attached still run, and their DEL is to come: "
                + ", ".join(f"{r.claimant} in {r.netns}" for r in running)
                + ". Delete them first, or give --force (see docs/install.md#remove-route-from-a-node)")
            return 1
        plugin = _plugin(args.plugin, running) if args.plugin else None
        for line in skipped:
            say(f"{line}: removed with the state dir")
        _remove(runner, store, recorded, running, plugin)
    except (CNIError, OSError) as e:
        say(f"failed: {e}")
        return 1
    finally:
        if journal.lines:
            deliver(journal.text())
    return 0


def runs(runner, record):
    """Whether the pod of a record still runs: the namespace its ADD named is still that one. (A record without
    the namespace's identity, of an older version, counts as running while its path is a namespace.)"""
    if not record.netns:
        return False
    found = runner.host.namespace_id(record.netns)
    return found is not None and (record.netns_id is None or found == record.netns_id)


def _plugin(path, running):
    """The plugin file to remove, or None when it must stay; refused (OSError) when it is not a route build."""
    if running:
        say(f"keeping {path}: the DELs of {len(running)} running pods run it")
        return None
    if not os.path.lexists(path):
        say(f"nothing to remove: no {path}")
        return None
    from .install import describe

    if os.path.islink(path) or not describe(path)[0]:
        raise OSError(f"not removing {path}: it is not a route build; remove it by hand")
    return path


def _remove(runner, store, recorded, running, plugin):
    what = "would remove" if runner.dry_run else "removed"
    for record in running:
        pod_routes.remove(runner, pod_routes.plan(record), record.netns, record.ifname)
        say(f"{what} the routes and rules of {record.claimant} inside its pod {record.netns}")
    masters = {r.shim: r.master for r in recorded}
    for name in _lock_names(store.top):
        masters.setdefault(name, None)
    for name, master in sorted(masters.items()):
        with contextlib.nullcontext() if runner.dry_run else store.shim_lock(name):
            say(f"{name}: {_remove_shim(runner, name, master, what)}")
    if runner.has_program("nft") and nft.has_table(runner.query(nft.list_tables(), "nft").out):
        runner.change(nft.delete_table(), program="nft")
        say(f"{what} the nft table {' '.join(nft.TABLE)}")
    say(_remove_state_dir(store.top, runner.dry_run, what))
    if plugin:
        if not runner.dry_run:
            os.unlink(plugin)
        say(f"{what} {plugin}")


def _remove_shim(runner, name, master, what):
    """Delete the shim's routes of ours, then the shim if route made it; what was done, as a sentence."""
    node = Node.observe(runner)
    link = node.links.get(name)
    if link is None:
        return "no such device: nothing to remove"
    master_link = node.links.get(master or link.parent)
    reason = shim.foreign_reason(link, master_link) if master_link else "its master is gone"
    ours = [r for r in runner.read([iproute.show_all_routes()])  # both families
            if routes.is_ours(r, name) and r.get("table", "main") == "main"]
    for route in ours:
        runner.change(iproute.delete_route(routes.prefix_of(route["dst"], ":" in route["dst"]), name))
    done = f"{what} {len(ours)} route{'s' if len(ours) != 1 else ''}"
    if reason is None and link.permanent_mac == shim.stable_mac(master_link.permanent_mac, name):
        runner.change(iproute.delete_link(name))
        return f"{done} and the shim"
    return f"{done}; the device stays: route did not make it ({reason or 'its MAC is not the one route gives'})"


def _lock_names(state_dir):
    try:
        names = files.list_dir(state_dir, "locks")
    except OSError:
        return []
    return [n[len(SHIM_LOCK):] for n in names if n.startswith(SHIM_LOCK)]


def _remove_state_dir(state_dir, dry_run, what):
    """Remove what route keeps under the state dir (LAYOUT), then the directory if nothing else is in it."""
    if not os.path.isdir(state_dir) or os.path.islink(state_dir):
        return f"no state dir {state_dir}: nothing to remove"
    for part in LAYOUT:
        top = os.path.join(state_dir, part)
        if os.path.islink(top) or not os.path.isdir(top):
            if os.path.lexists(top) and not dry_run:
                os.unlink(top)
            continue
        for directory, subdirs, names in os.walk(top, topdown=False):
            for name in names + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
                if not dry_run:
                    os.unlink(os.path.join(directory, name))
            if not dry_run:
                os.rmdir(directory)
    left = sorted(set(os.listdir(state_dir)) - set(LAYOUT)) if dry_run else os.listdir(state_dir)
    if left:
        return f"{what} route's state under {state_dir}; the directory stays, it holds {', '.join(sorted(left))}"
    if not dry_run:
        os.rmdir(state_dir)
    return f"{what} the state dir {state_dir}"


def say(text):
    print(f"route remove: {text}")
    sys.stdout.flush()
