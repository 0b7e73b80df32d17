#!/usr/bin/env python3
"""The CPython interpreters this machine has (pyenv's, and python3.X on PATH), one per minor version.

    python3 tools/pythons.py [--supported | --too-old] [--ends]

prints `VERSION PATH` lines, oldest first. --supported: only those route runs on (interpreter.OLDEST and newer);
--too-old: only older ones; --ends: only the oldest and the newest of them. tools/test.sh runs the e2e suite
with the oldest and the newest supported one as the node's python3; tests/dist runs the one-file build under
every one.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))
from cniroute.interpreter import OLDEST  # noqa: E402  (stdlib only, any python3)


def find():
    """[((major, minor, micro), path)], one per minor version, oldest first."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    candidates += [p for p in (shutil.which(f"python3.{minor}") for minor in range(4, 30)) if p]
    candidates += [p for p in (shutil.which("python3"),) if p]
    found = {}
    for python in candidates:
        try:
            proc = subprocess.run([python, "-c", "import sys; print('%d %d %d' % sys.version_info[:3])"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            version = tuple(int(n) for n in proc.stdout.split())
            found.setdefault(version[:2], (version, os.path.realpath(python)))
    return sorted(found.values())


def supported(pythons):
    return [(v, p) for v, p in pythons if v[:2] >= OLDEST]


def too_old(pythons):
    return [(v, p) for v, p in pythons if v[:2] < OLDEST]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--supported", action="store_true", help="only those route runs on")
    which.add_argument("--too-old", action="store_true", help="only those too old for route")
    parser.add_argument("--ends", action="store_true", help="only the oldest and the newest")
    args = parser.parse_args(argv)
    pythons = find()
    if args.supported:
        pythons = supported(pythons)
    elif args.too_old:
        pythons = too_old(pythons)
    if args.ends:
        pythons = sorted(set(pythons[:1] + pythons[-1:]))
    for version, path in pythons:
        print(".".join(map(str, version)), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
