"""Releases and whole nodes, for the e2e tests of a plugin's life on a node (upgrade, rollback, removal, reboot).

previous_release(): the one-file build of the previous release, made from git history as its own
tools/build_dist.py made it (never from this tree), cached by commit. node_snapshot(): everything route can
leave on a node, to compare a node before route with the node after its removal.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from e2e_support import REPO, ip_json

import netns

# route 0.1.0: the release users run before this one. Its records have no "format" key (format 1).
PREVIOUS_RELEASE = ("0.1.0", "dbfdff8eaad36dd3f2c63d01619f4081f4e55e1d")
NODE_PYTHON = "/usr/bin/python3"  # compiles the build's bytecode, as for dist/route


def previous_release() -> Path:
    """The previous release's dist/route, built from its commit; cached (under /var/cache/route-ci when it can
    be written, else the temp dir) by commit, so a CI run builds it once."""
    version, commit = PREVIOUS_RELEASE
    cache = Path("/var/cache/route-ci")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.gettempdir()) / "route-ci"
        cache.mkdir(exist_ok=True)
    target = cache / f"route-{version}-{commit[:12]}.bin"
    if netns.is_one_file_build(target):
        return target
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        raise netns.SetupError(f"commit {commit} (route {version}) is not in this clone's history: a shallow "
                               "clone? `git fetch --unshallow` brings it")
    with tempfile.TemporaryDirectory(prefix=f"route-{version}-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        built = Path(tmp) / "route"
        proc = subprocess.run([sys.executable, str(source / "tools" / "build_dist.py"), "--python", NODE_PYTHON,
                               "--output", str(built)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise netns.SetupError(f"building route {version} failed:\n{proc.stdout}\n{proc.stderr}")
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(built.read_bytes())
        temporary.chmod(0o755)
        temporary.replace(target)
    return target


def namespace_snapshot(exec_in, *, links=True) -> dict:
    """A namespace's links (without counters), addresses, routes of every table and both families, rules, and
    nft ruleset, read through `exec_in(argv)` (Topology.node_exec, or a pod's)."""

    def read(argv):
        proc = exec_in(["ip", "-json", *argv])
        assert proc.returncode == 0, (argv, proc.stderr)
        return proc.stdout

    snapshot = {"addresses": read(["addr", "show"]),
                "routes": [read([family, "route", "show", "table", "all"]) for family in ("-4", "-6")],
                "rules": [read([family, "rule", "show"]) for family in ("-4", "-6")],
                "nft": exec_in(["nft", "list", "ruleset"]).stdout}
    if links:
        snapshot["links"] = read(["-d", "link", "show"])
    return snapshot


def node_snapshot(topo: netns.Topology, state_dir: Path) -> dict:
    """The node namespace as namespace_snapshot reads it, and every file under the state dir."""
    snapshot = namespace_snapshot(topo.node_exec)
    snapshot["state files"] = sorted(str(p.relative_to(state_dir)) for p in state_dir.rglob("*")) \
        if state_dir.exists() else None
    return snapshot


def our_routes(topo: netns.Topology) -> list:
    """The node's routes of protocol 201 (the plugin's), of both families."""
    return sorted(r["dst"] for family in ("-4", "-6")
                  for r in ip_json(topo, [family, "route", "show", "table", "all", "proto", "201"]) or [])


def records(state_dir: Path) -> list:
    """The attachment record files under a state dir."""
    return sorted(state_dir.glob("networks/*/attachments/*.json"))


def claims(state_dir: Path) -> list:
    return sorted(p.name for p in (state_dir / "ips").glob("*")) if (state_dir / "ips").is_dir() else []
