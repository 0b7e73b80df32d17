"""A plugin's life on a node, for the e2e tests of upgrade, rollback, removal and reboot.

previous_release(): the one-file build of the previous release, made from git history as its own
tools/build_dist.py made it (never from this tree), cached by commit. Node: a node, the chains of one kind of
pod, and a Cni per release. node_snapshot(): everything route can leave on a node, to compare a node before
route with the node after its removal.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from test_multus import Bed

from beds import REPO, libcni
from beds.libcni import Cni, ok, pod_ips
from beds.runtime import SetupError
from beds.topology import MASTER, SHIM, Topology, ip_json, node_sysctl

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
    if libcni.is_one_file_build(target):
        return target
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        raise SetupError(f"commit {commit} (route {version}) is not in this clone's history: a shallow "
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
            raise SetupError(f"building route {version} failed:\n{proc.stdout}\n{proc.stderr}")
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(built.read_bytes())
        temporary.chmod(0o755)
        temporary.replace(target)
    return target


VIA = ["10.96.0.0/12"]
NETWORK = "rtt-route"  # the route network of both kinds of pod


class Node:
    """The node, the chains of one kind of pod ("route-via-host" or "multus"), and a Cni per release: "this",
    and with `previous_build` "previous" (one libcni cache: one runtime)."""

    def __init__(self, kind, cni, topo, chain, tmp_path, route_plugin, previous_build=None):
        self.topo, self.state = topo, tmp_path / "route-state"
        self.plugins, self.cni = {"this": route_plugin}, {"this": cni}
        if previous_build:
            old_path = libcni.make_cni_path(tmp_path / "cni-bin-previous", previous_build)
            self.plugins["previous"] = previous_build
            self.cni["previous"] = Cni(topo, cni.driver, old_path, cni.cache_dir)
        if kind == "route-via-host":
            node_sysctl(topo, "net.ipv4.ip_forward", 1)
            self.chains = [(chain(routeViaHost=VIA), "eth0")]
            self.route_keys = {"routeViaHost": VIA}
        else:
            bed = Bed(cni, topo, tmp_path, "node-nic")
            # ptp turns forwarding on at its first ADD, as a cluster's node has it: on from the start, so that
            # what it changes (the subnet-router anycast routes of IPv6 forwarding) is no part of route's doing
            node_sysctl(topo, "net.ipv4.ip_forward", 1)
            node_sysctl(topo, "net.ipv6.conf.all.forwarding", 1)
            for release in self.cni.keys() - {"this"}:
                os.symlink(libcni.REFERENCE_PLUGINS / "ptp", os.path.join(self.cni[release].cni_path, "ptp"))
            self.chains = [(bed.primary, "eth0"), (bed.secondary, "net1")]
            self.route_keys = {}
        self.route_chain, self.ifname = self.chains[-1]
        assert json.loads(self.route_chain.read_text())["name"] == NETWORK

    def add(self, release, container=None):
        """A new pod, every attachment ADDed (as `container`, else cid(pod)): (pod, its addresses on route's
        interface, its namespace before)."""
        pod, path = self.topo.add_pod()
        before = self.pod_snapshot(pod)
        for conf, ifname in self.chains:
            result = ok(self.cni[release].add(conf, path, container or cid(pod), ifname), f"ADD {ifname} by {release}")
        return pod, pod_ips(result, self.ifname), before

    def check(self, release, pod, container=None):
        ok(self.cni[release].check(self.route_chain, pod, container or cid(pod), self.ifname), f"CHECK by {release}")

    def delete(self, release, pod):
        for conf, ifname in reversed(self.chains):
            ok(self.cni[release].delete(conf, pod, cid(pod), ifname), f"DEL {ifname} by {release}")

    def gc(self, release, valid):
        """GC of route's network, the runtime listing the containers `valid`."""
        conf = {"cniVersion": "1.1.0", "name": NETWORK, "type": "route", "master": MASTER, "bridge": SHIM,
                "stateDir": str(self.state), **self.route_keys,
                "cni.dev/valid-attachments": [{"containerID": c, "ifname": self.ifname} for c in valid]}
        proc = subprocess.run(libcni.plugin_argv(self.topo.node, self.plugins[release], "GC"), input=json.dumps(conf),
                              capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout) == (0, ""), proc

    def person(self, release, *args):
        return subprocess.run(libcni.person_argv(self.topo.node, self.plugins[release], *args), capture_output=True,
                              text=True, timeout=120)

    def pod_snapshot(self, pod):
        return namespace_snapshot(lambda argv: self.topo.pod_exec(pod, argv), links=False)

    def formats(self):
        """The "format" of every record on the node (None: the key is absent)."""
        return [json.loads(path.read_text()).get("format") for path in records(self.state)]

    def assert_clean(self):
        """No route, record or claim of route's left, nor its nft table (the shim stays, as after any DEL)."""
        assert our_routes(self.topo) == []
        assert records(self.state) == [] and claims(self.state) == []
        assert "cni_route" not in self.topo.node_exec(["nft", "list", "tables"]).stdout


def cid(pod):
    return "ctr-" + os.path.basename(pod)


def namespace_snapshot(exec_in, *, links=True) -> dict:
    """A namespace's links (without counters), addresses, routes of every table and both families, rules, and
    nft ruleset, read through `exec_in(argv)` (Topology.node_exec, or a pod's)."""

    def read(argv):
        proc = exec_in(["ip", "-json", *argv])
        assert proc.returncode == 0, (argv, proc.stderr)
        return json.loads(proc.stdout)

    snapshot = {"addresses": read(["addr", "show"]),
                "routes": [read([family, "route", "show", "table", "all"]) for family in ("-4", "-6")],
                "rules": [read([family, "rule", "show"]) for family in ("-4", "-6")],
                "nft": exec_in(["nft", "list", "ruleset"]).stdout}
    if links:
        snapshot["links"] = read(["-d", "link", "show"])
    return snapshot


def node_snapshot(topo: Topology, state_dir: Path) -> dict:
    """The node namespace as namespace_snapshot reads it, once it has settled (no IPv6 address of a new link
    still tentative, whose duplicate address detection adds routes when it ends; two reads alike, as the kernel
    takes a deleted pod namespace's veth away after the deletion returns), and every file under the state dir."""
    previous = None
    for _ in range(100):
        snapshot = namespace_snapshot(topo.node_exec)
        tentative = any(a.get("tentative") for link in snapshot["addresses"] for a in link.get("addr_info", ()))
        if snapshot == previous and not tentative:
            break
        previous = snapshot
        time.sleep(0.1)
    snapshot["state files"] = sorted(str(p.relative_to(state_dir)) for p in state_dir.rglob("*")) \
        if state_dir.exists() else None
    return snapshot


def our_routes(topo: Topology) -> list:
    """The node's routes of protocol 201 (the plugin's), of both families."""
    return sorted(r["dst"] for family in ("-4", "-6")
                  for r in ip_json(topo, [family, "route", "show", "table", "all", "proto", "201"]) or [])


def records(state_dir: Path) -> list:
    """The attachment record files under a state dir."""
    return sorted(state_dir.glob("networks/*/attachments/*.json"))


def claims(state_dir: Path) -> list:
    return sorted(p.name for p in (state_dir / "ips").glob("*")) if (state_dir / "ips").is_dir() else []
