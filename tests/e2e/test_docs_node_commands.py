"""The node commands README.md and docs/ show (`<!-- test: node -->` blocks) work as printed, on a node; and
the nft table they show (`<!-- test: nft-table -->`) is the one an ADD with routeViaHost makes.

A throw-away node namespace with one pod attached through the real libcni (the seed's chain, logging to
/var/log/cni-route.log, state in the default /run/cni-route), and a mount namespace of the test's own in which
the paths the commands use by default are the test's: /run, /var/log and /opt are empty tmpfs (but for
/opt/cni/bin, which a node has), /etc/cni/net.d
holds the chain only. There every line runs as a person types it, as root, with `route` and `dist/route`
the one-file build, and must exit 0."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import docs_examples
import pytest

from beds import REPO, libcni, netns, runtime
from beds.libcni import add_pod
from beds.topology import node_sysctl

CONTAINER = "demo-3f2a9c1e7b44"  # the container docs/debugging.md's replay example names


def one_file_build(route_plugin: Path) -> Path:
    """What the pages' commands name: the one-file build (ROUTE_PLUGIN in CI, else the tree's dist/route)."""
    plugin = route_plugin if libcni.is_one_file_build(route_plugin) else REPO / "dist" / "route"
    if not libcni.is_one_file_build(plugin):
        pytest.fail(f"the pages' commands run the one-file build: build {plugin} (tools/build_dist.py)", pytrace=False)
    return plugin


def chain(netd: Path) -> Path:
    conf = json.loads((REPO / "net.d" / "00-default.conflist").read_text())
    conf["plugins"][0]["ipam"]["dataDir"] = "/run/ipam"
    conf["plugins"][1]["logFile"] = "/var/log/cni-route.log"
    netd.mkdir()
    path = netd / "00-default.conflist"
    path.write_text(json.dumps(conf))
    return path


def test_the_node_commands_of_the_docs_work(topo, cnidriver, tmp_path, route_plugin):
    commands = docs_examples.commands("node")
    assert len(commands) >= 10, commands
    plugin = one_file_build(route_plugin)
    conflist = chain(tmp_path / "net.d")
    cni_path = libcni.make_cni_path(tmp_path / "cni-bin", plugin, canary=False)
    person = tmp_path / "person"  # what a person's shell finds: `route` on PATH, `dist/route` in the cwd
    (person / "bin").mkdir(parents=True)
    (person / "dist").mkdir()
    for link in (person / "bin" / "route", person / "dist" / "route"):
        link.symlink_to(plugin)
    env = runtime.runtime_env()
    env["PATH"] = f"{person / 'bin'}:{env['PATH']}"
    pod, pod_path = topo.add_pod()
    keep = tmp_path / "netns"
    keep.mkdir()
    q = shlex.quote
    lines = [
        "set -eu",
        f"mount --rbind {netns.NETNS_DIR} {q(str(keep))}",  # the pods' namespaces stay reachable under /run
        "mount -t tmpfs none /run", f"mkdir {netns.NETNS_DIR}", f"mount --rbind {q(str(keep))} {netns.NETNS_DIR}",
        "mount -t tmpfs none /var/log", "mount -t tmpfs none /opt", "mkdir -p /opt/cni/bin",  # a node has it
        f"mount --bind {q(str(conflist.parent))} /etc/cni/net.d",
        " ".join(["env", "-i", *[q(f"{k}={v}") for k, v in env.items()], f"CNI_PATH={q(cni_path)}", q(cnidriver),
                  "-cache-dir", q(str(tmp_path / "cache")), "-container-id", CONTAINER, "-ifname", "eth0", "add",
                  "/etc/cni/net.d/00-default.conflist", q(pod_path)]) + " > /dev/null",
        f"cd {q(str(person))}",
        "set +e",
    ]
    for i, (_, command) in enumerate(commands):
        lines.append(f"env -i {' '.join(q(f'{k}={v}') for k, v in env.items())} HOME=/root "
                     f"bash -c {q(command)} > {tmp_path}/out.{i} 2>&1; echo $? > {tmp_path}/rc.{i}")
    assert Path("/etc/cni/net.d").is_dir(), "tools/setup.sh's podman makes /etc/cni/net.d, the mount point"
    proc = subprocess.run(["nsenter", f"--net={netns.netns_path(topo.node)}", "unshare", "--mount",
                           "--propagation", "private", "bash", "-c", "\n".join(lines)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    failures = []
    for i, (page, command) in enumerate(commands):
        rc = (tmp_path / f"rc.{i}").read_text().strip()
        if rc != "0":
            failures.append(f"{page}: {command}\n  exit {rc}: {(tmp_path / f'out.{i}').read_text()[-2000:]}")
    assert failures == [], "\n".join(failures)


def test_the_nft_table_shown_is_the_one_add_makes(cni, topo, chain):
    shown = [body for page in docs_examples.pages()
             for kind, name, body, _ in docs_examples.marked_blocks(page.read_text())
             if kind == "test" and name == "nft-table"]
    assert len(shown) == 1, shown
    entry = json.loads(next(body for page in docs_examples.pages()
                            for kind, name, body, _ in docs_examples.marked_blocks(page.read_text())
                            if kind == "test" and name == "route-entry" and "routeViaHost" in body))
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    add_pod(cni, chain(routeViaHost=entry["routeViaHost"]))
    listed = topo.node_exec(["nft", "list", "table", "inet", "cni_route"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == shown[0]
