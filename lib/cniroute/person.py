"""What a person runs by hand: `route --version` and the commands, one module each, each with its own parser
(`add_parser(sub)`, which sets `handler`, and a description written for the person who runs it): replay
(replay.py), doctor (doctor/), install and uninstall (install.py), reconcile (reconcile.py), status (status.py),
remove (remove.py)."""
import argparse
import sys

from . import SUPPORTED_VERSIONS, __version__, doctor, install, interpreter, reconcile, remove, replay, status
from .errors import UnsuitableInterpreter

COMMANDS = (replay, doctor, install, reconcile, status, remove)
# The page of docs/ (in the source tree) that explains each command; every --help names it.
MANUAL = {"replay": "docs/debugging.md", "doctor": "docs/doctor.md", "install": "docs/install.md",
          "uninstall": "docs/install.md", "reconcile": "docs/self-healing.md", "status": "docs/metrics.md",
          "remove": "docs/install.md"}


DESCRIPTION = """\
route is a chained CNI plugin, run by the container runtime after macvlan, that lets a node reach its own
macvlan pods. Run by hand, it serves the person who looks after a node: the commands below install it, check
the node, repair what the node's network lost, show what the repairing watcher did, replay what a call did and
take route off the node."""


def build_parser():
    top = argparse.ArgumentParser(prog="route", description=DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="manual: README.md and docs/ in the source tree; " + ", ".join(
                                      f"{verb}: {page}" for verb, page in MANUAL.items()))
    top.add_argument("--version", action="store_true", help="print the version and exit")
    sub = top.add_subparsers(dest="verb")
    for command in COMMANDS:
        command.add_parser(sub)
    for verb, parser in sub.choices.items():
        parser.epilog = f"manual: {MANUAL[verb]}"
        parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the descriptions' paragraphs as written
    return top


def main(argv, host=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return version()
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        interpreter.require_packages()  # the commands run host programs through sh, as the plugin does
    except UnsuitableInterpreter as e:
        print(f"route {args.verb} cannot run here (code {e.code}): {e}", file=sys.stderr)
        return 1
    return args.handler(args, host)


def version():
    print(f"route {__version__} (CNI {', '.join(SUPPORTED_VERSIONS)}; python {sys.version.split()[0]})")
    print(install.dependencies_line())
    try:
        interpreter.require_packages()
    except UnsuitableInterpreter as e:
        print(f"route cannot run as a CNI plugin here (code {e.code}): {e}", file=sys.stderr)
        return 1
    return 0
