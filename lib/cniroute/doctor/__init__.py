"""`route doctor`: what is wrong on this node for the plugin, and what fixes it. It changes nothing.

    route doctor [--conf-dir DIR | --conflist FILE]... [--state-dir DIR] [--node-root DIR] [--json] [--probe]

The node: what the plugin needs to run (`prerequisites`, which `route install --node-root` also checks before it
installs) and the kube-proxy mode. Then every network whose config chains `route` (the conf dirs, default
/etc/cni/net.d, and --conflist files) and every network with attachments recorded under a state dir (--state-dir,
default /run/cni-route, and each config's stateDir; a Multus attachment has no conflist on the node): its master
and shim, the shim's addresses and sysctls, NetworkManager or systemd-networkd on the shim, effective rp_filter
and arp_ignore, forwarding and the masquerade rule for routeViaHost, and for every recorded pod address its route,
the path the kernel takes to it, its neighbour entry and, with --probe, one ping.

Each check is OK, WARN or FAIL, with what was found and, unless OK, the lines that fix it: commands exactly as
they would be run, and comments (`# ...`) where a person must choose. Exit 0 when nothing FAILs, 1 otherwise.

Every host query goes through the Runner, whose Journal is never written (doctor is no CNI call and leaves no log
block); doctor takes no lock and writes no state. --probe pings each recorded pod address once, at most
PROBE_LIMIT of them, waiting PROBE_WAIT s for each. With --node-root (the node's / mounted in a container that runs
the route image, as `kubectl debug node/NAME` mounts it at /host), the node's programs are checked chrooted there,
as `route install --node-root` checks them, and the image's nft is compared with the node's.

Its parts: discovery (the networks and their records), prerequisites (what the node needs; install uses it
too), checks (with pods and managers), verdicts (the Check each makes, naming its docs section), report (text
and JSON).
"""
import time

from .. import config
from ..journal import Journal
from ..runner import NodeRoot, Runner
from .checks import Doctor
from .discovery import DEFAULT_CONF_DIR
from .pods import PROBE_LIMIT, PROBE_WAIT
from .report import failed, render_json, render_text

DESCRIPTION = """\
Say what is wrong on this node for the route plugin, and what fixes it, without changing anything: for the
operator whose pods cannot reach their node, or who wants to know before they cannot. It checks what the plugin
needs to run (python3, ip, nsenter, nft), then every network whose config chains route (the conf dirs and
--conflist files) and every network recorded under a state dir (a Multus attachment has no conflist on the node):
the master and the shim, the shim's addresses and sysctls, network managers that would manage the shim,
rp_filter and arp_ignore, forwarding and the masquerade rule for routeViaHost, and for each recorded pod address
its route, the path the kernel takes and its neighbour entry (with --probe, one ping).

Each check is OK, WARN or FAIL, with what was found and, unless OK, the commands that fix it, exactly as they
would be run. Exit 0 when nothing FAILs, 1 otherwise; --json prints one document, for monitoring."""


def add_parser(sub):
    p = sub.add_parser("doctor", help="what is wrong on this node for route, and what fixes it (changes nothing)",
                       description=DESCRIPTION)
    p.add_argument("--conf-dir", action="append", default=[], metavar="DIR",
                   help=f"a CNI config dir to read (default: {DEFAULT_CONF_DIR}, unless --conflist is given)")
    p.add_argument("--conflist", action="append", default=[], metavar="FILE", help="a conflist to read")
    p.add_argument("--state-dir", default=config.DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"where to look for the records of networks without a conflist here (default "
                        f"{config.DEFAULT_STATE_DIR}); a config's own stateDir is read too")
    p.add_argument("--node-root", metavar="DIR",
                   help="the node's / as a container mounts it: check the node's programs there (chrooted), and "
                        "compare this nft with the node's")
    p.add_argument("--json", action="store_true", help="print one JSON document, for monitoring")
    p.add_argument("--probe", action="store_true",
                   help=f"also ping each recorded pod address once (at most {PROBE_LIMIT}, {PROBE_WAIT} s each)")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    # Its Journal is never written (doctor leaves no log block), and a dry run runs no change even by mistake.
    runner = Runner(Journal(), dry_run=True, host=host)
    conf_dirs = args.conf_dir or ([] if args.conflist else [DEFAULT_CONF_DIR])
    node_programs = Runner(Journal(), dry_run=True, host=NodeRoot(args.node_root)) if args.node_root else None
    sections = Doctor(runner, args.probe, node_programs).run(conf_dirs, args.conflist, args.state_dir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print((render_json if args.json else render_text)(sections, stamp), end="")
    return 1 if failed(sections) else 0
