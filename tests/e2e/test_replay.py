"""End-to-end tests of the replayable log (`logFile`) and `route replay`, through the real libcni.

The log is one block per invocation: a `# == route VERSION | TIME | VERB | pid N` header, `# key: value`
lines (container, ifname, netns, network, cniVersion), then every state-changing command as a plain shell
line.  So `sh LOG` and `route replay [--container ID] [--dry-run] LOG` must rebuild what a lost shim took
with it, and concurrent invocations must never mix their blocks.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

from beds import REPO
from beds.libcni import add_pod, ok, pod_ips
from beds.topology import LAN_V4, NODE_V4, SHIM

N_PARALLEL = 64

# How the brief says a person parses a log; prints the blocks as JSON for the test to read.
PARSE = (
    "import json, sys; sys.path.insert(0, 'lib'); from cniroute import journal; "
    "print(json.dumps([b._asdict() for b in journal.parse_log(open(sys.argv[1]).read())]))"
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def add_one(cni, conf):
    """(pod, container ID, its one IP)."""
    pod, result = add_pod(cni, conf)
    ips = pod_ips(result)
    assert len(ips) == 1, result
    return pod, cni.default_container_id(pod), ips[0]


def route_to(cni, ip):
    """Our route to the pod IP on the shim, or None."""
    found = [r for r in cni.shim_routes() if r.get("dst") in (ip, f"{ip}/32")]
    assert len(found) <= 1, found
    return found[0] if found else None


def assert_restored(cni, pod, ip):
    link = cni.shim_link()
    assert link is not None, f"{SHIM} was not re-created"
    info = link.get("linkinfo", {})
    assert info.get("info_kind") == "macvlan" and info.get("info_data", {}).get("mode") == "bridge", link
    assert link.get("link") == "eno1" and "UP" in link.get("flags", []), link
    route = route_to(cni, ip)
    assert route is not None, f"route {ip} dev {SHIM} not back: {cni.node_routes()}"
    assert route.get("scope") == "link", route
    assert cni.ping_from_node(ip), f"host -> pod {ip} after restore"
    assert cni.ping_from_pod(pod, NODE_V4), f"pod -> host {NODE_V4} after restore"


def lose_shim(cni, pod_ips_):
    """What an operator's mistake or a network manager does: the shim goes, and its routes with it."""
    proc = cni.topo.node_exec(["ip", "link", "del", SHIM])
    assert proc.returncode == 0, proc.stderr
    assert cni.shim_link() is None
    for ip in pod_ips_:
        assert route_to(cni, ip) is None
        assert not cni.ping_from_node(ip), f"host -> pod {ip} still works without {SHIM}"


def replay(cni, route_plugin, *args):
    """`ip netns exec NODE route replay ARGS` (the node netns is where the log's commands belong)."""
    return cni.topo.node_exec([str(route_plugin), "replay", *map(str, args)], timeout=120)


def parse_log(path):
    proc = subprocess.run([sys.executable, "-c", PARSE, str(path)], cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"parse_log failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


def host_state(cni):
    """Everything replay could change in the node netns: links with addresses, routes of every table, sysctls."""
    state = {}
    for argv in (["-d", "addr", "show"], ["-4", "route", "show", "table", "all"],
                 ["-6", "route", "show", "table", "all"], ["-4", "rule"], ["-6", "rule"]):
        proc = cni.topo.node_exec(["ip", "-json", *argv])
        assert proc.returncode == 0, proc.stderr
        state[" ".join(argv)] = json.loads(proc.stdout or "[]")
    proc = cni.topo.node_exec(["sh", "-c", "grep -r . /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf"])
    state["sysctls"] = sorted(proc.stdout.splitlines())
    return state


# --------------------------------------------------------------------------
# restore with sh and with route replay
# --------------------------------------------------------------------------

def test_sh_log_restores_lost_shim(cni, topo, chain, tmp_path):
    log = tmp_path / "log" / "route.log"
    conf = chain(logFile=str(log))
    pod, _, ip = add_one(cni, conf)
    assert cni.ping_from_node(ip) and cni.ping_from_pod(pod, NODE_V4)
    assert log.is_file()
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)

    lose_shim(cni, [ip])

    proc = topo.node_exec(["sh", str(log)], timeout=120)
    assert proc.returncode == 0, f"sh {log} failed:\n{proc.stdout}\n{proc.stderr}"
    assert_restored(cni, pod, ip)
    assert cni.ping_from_pod(pod, LAN_V4)
    ok(cni.check(conf, pod), "CHECK after sh LOG")


def test_route_replay_container_restores_only_that_container(cni, topo, chain, tmp_path, route_plugin):
    log = tmp_path / "route.log"
    conf = chain(logFile=str(log))
    # Sequential ADDs: the first pod's block creates the shim, the second's only adds its route.
    first, first_id, first_ip = add_one(cni, conf)
    second, second_id, second_ip = add_one(cni, conf)
    blocks = parse_log(log)
    assert [(b["command"], b["fields"]["container"]) for b in blocks] == [("ADD", first_id), ("ADD", second_id)]
    assert any(line.startswith(f"ip link add name {SHIM} ") for line in blocks[0]["lines"]), blocks[0]
    assert not any(line.startswith("ip link add") for line in blocks[1]["lines"]), blocks[1]

    lose_shim(cni, [first_ip, second_ip])

    # The second pod's block alone cannot bring the shim back: its route has nowhere to go.
    proc = replay(cni, route_plugin, "--container", second_id, log)
    assert proc.returncode != 0, f"replay of {second_id} succeeded without {SHIM}:\n{proc.stdout}"
    assert cni.shim_link() is None, "a block that did not create the shim re-created it"
    assert route_to(cni, second_ip) is None

    proc = replay(cni, route_plugin, "--container", first_id, log)
    assert proc.returncode == 0, f"replay --container {first_id} failed:\n{proc.stdout}\n{proc.stderr}"
    assert f"container={first_id}" in proc.stdout and second_id not in proc.stdout, proc.stdout
    assert_restored(cni, first, first_ip)
    assert route_to(cni, second_ip) is None, "replay --container restored another container's route"
    assert not cni.ping_from_node(second_ip)

    # Now the second block applies cleanly, and only adds the second route.
    proc = replay(cni, route_plugin, "--container", second_id, "--command", "ADD", log)
    assert proc.returncode == 0, f"replay --container {second_id} failed:\n{proc.stdout}\n{proc.stderr}"
    assert_restored(cni, second, second_ip)
    assert route_to(cni, first_ip) is not None
    for pod in (first, second):
        ok(cni.check(conf, pod), f"CHECK {pod} after replay")


def test_route_replay_dry_run_changes_nothing(cni, topo, chain, tmp_path, route_plugin):
    log = tmp_path / "route.log"
    conf = chain(logFile=str(log))
    pod, _, ip = add_one(cni, conf)
    lose_shim(cni, [ip])  # so that a real replay would change plenty
    log_before = log.read_bytes()
    before = host_state(cni)

    proc = replay(cni, route_plugin, "--dry-run", log)
    assert proc.returncode == 0, f"replay --dry-run failed:\n{proc.stdout}\n{proc.stderr}"
    assert f"ip link add name {SHIM} " in proc.stdout and f"ip route replace {ip}/32 " in proc.stdout, proc.stdout
    assert "#   exit" not in proc.stdout, "route replay --dry-run reports having run something"
    assert host_state(cni) == before, "route replay --dry-run changed the host"
    assert log.read_bytes() == log_before, "route replay --dry-run changed the log"
    assert not cni.ping_from_node(ip)

    # The same log without --dry-run does change it: the check above is not vacuous.
    proc = replay(cni, route_plugin, log)
    assert proc.returncode == 0, f"replay failed:\n{proc.stdout}\n{proc.stderr}"
    assert host_state(cni) != before
    assert_restored(cni, pod, ip)


# --------------------------------------------------------------------------
# concurrency and hostile paths
# --------------------------------------------------------------------------

def test_parallel_adds_share_one_log(cni, topo, chain, tmp_path):
    log = tmp_path / "route.log"
    conf = chain(logFile=str(log))
    pods = [topo.add_pod() for _ in range(N_PARALLEL)]
    ids = [f"log-{i:02d}-{name}" for i, (name, _) in enumerate(pods)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=N_PARALLEL) as ex:
        results = list(ex.map(lambda a: cni.add(conf, a[0][1], a[1]), zip(pods, ids)))
    errors = [(cid, r) for cid, r in zip(ids, results) if r[0] != 0]
    assert not errors, f"{len(errors)}/{N_PARALLEL} parallel ADDs failed, first: {errors[0]}"
    ip_of = {}
    for cid, (_, res, _) in zip(ids, results):
        ips = pod_ips(res)
        assert len(ips) == 1, res
        ip_of[cid] = ips[0]
    assert len(set(ip_of.values())) == N_PARALLEL, ip_of
    netns_of = dict(zip(ids, (path for _, path in pods)))

    text = log.read_text()
    assert text.count("# == route ") == N_PARALLEL, "a block header is missing or torn"
    blocks = parse_log(log)
    assert len(blocks) == N_PARALLEL
    assert all(b["command"] == "ADD" for b in blocks), [b["command"] for b in blocks]
    assert sorted(b["fields"].get("container") for b in blocks) == sorted(ids)
    assert len({b["pid"] for b in blocks}) == N_PARALLEL

    shim_created = 0
    for b in blocks:
        cid = b["fields"]["container"]
        ip = ip_of[cid]
        assert b["fields"].get("netns") == netns_of[cid], b["fields"]
        assert b["fields"].get("ifname") == "eth0" and b["fields"].get("network") == "rtt-route", b["fields"]
        mine = [line for line in b["lines"] if line.startswith("ip route replace ")]
        assert len(mine) == 1 and mine[0].startswith(f"ip route replace {ip}/32 dev {SHIM} "), (cid, b["lines"])
        others = [line for line in b["lines"] if any(o in line.split() or f"{o}/32" in line.split()
                                                     for c, o in ip_of.items() if c != cid)]
        assert others == [], f"block of {cid} holds lines of other blocks: {others}"
        assert all(line.startswith(("ip ", "sysctl ")) for line in b["lines"]), b["lines"]
        shim_created += any(line.startswith(f"ip link add name {SHIM} ") for line in b["lines"])
    assert shim_created == 1, f"{shim_created} blocks claim to have created {SHIM}"

    # every raw line is whole: a header, a comment, or a command of this plugin
    for line in text.splitlines():
        assert line.startswith(("# ", "ip ", "sysctl ")), f"torn line in the log: {line!r}"


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-file", "dangling"])
def test_log_symlink_is_not_followed(cni, topo, chain, tmp_path, target_exists):
    target = tmp_path / "victim.txt"
    content = b"precious, not a log\n"
    if target_exists:
        target.write_bytes(content)
        os.chmod(target, 0o644)
        before = os.stat(target)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "route.log"
    log.symlink_to(target)

    conf = chain(logFile=str(log))
    pod, _, ip = add_one(cni, conf)  # the log must never fail the call
    assert route_to(cni, ip) is not None
    assert cni.ping_from_node(ip)

    assert log.is_symlink() and os.readlink(log) == str(target), "the planted symlink was replaced"
    if target_exists:
        after = os.stat(target)
        assert target.read_bytes() == content, "the plugin wrote through the symlink"
        assert (after.st_mode, after.st_uid, after.st_size, after.st_mtime_ns, after.st_ino) == \
            (before.st_mode, before.st_uid, before.st_size, before.st_mtime_ns, before.st_ino)
    else:
        assert not os.path.lexists(target), "the plugin created the symlink's target"
    assert sorted(os.listdir(logdir)) == ["route.log"], os.listdir(logdir)
