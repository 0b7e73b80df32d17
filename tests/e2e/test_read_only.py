"""What promises to change nothing changes nothing, for real: `route doctor` and `route reconcile --dry-run` (the
one-file build, as a node runs it) on a node whose state dir holds the earlier layout's ownership files and
hostile entries, and whose conf dir holds hostile configs. Before and after: the node namespace's links,
addresses, routes of every table, rules, neighbours, nft ruleset and sysctls, and the state dir byte for byte."""
import os
import socket
import stat
import subprocess

import pytest

from beds import libcni
from beds.libcni import add_pod, pod_ips
from beds.topology import ip_json, node_sysctl


def state_dir_bytes(top):
    """Every entry under `top`, not following symlinks: type, mode, mtime, content (a symlink's target)."""
    found = {}
    for directory, dirs, names in os.walk(top):
        for name in sorted(dirs + names):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            content = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            found[os.path.relpath(path, top)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                 info.st_mtime_ns, content)
    return found


def node_state(topo, state_dir):
    sysctls = topo.node_exec(["sh", "-c", "grep -r . /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf "
                                          "/proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding"
                                          " 2>/dev/null"]).stdout
    return (ip_json(topo, ["-d", "link"]), ip_json(topo, ["addr"]), ip_json(topo, ["route", "show", "table", "all"]),
            ip_json(topo, ["-6", "route", "show", "table", "all"]), ip_json(topo, ["rule"]),
            ip_json(topo, ["-6", "rule"]), ip_json(topo, ["neigh"]),
            topo.node_exec(["nft", "list", "ruleset"]).stdout, sysctls, state_dir_bytes(state_dir))


@pytest.fixture
def node(topo, cni, chain, tmp_path):
    """A node with a routeViaHost pod, then made legacy and hostile: its ownership file moved to the earlier
    per-network layout, the shim's route and masquerade rule lost (so that a repair is due), and planted
    entries in the state dir and the conf dir."""
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    conf = chain(routeViaHost=["10.96.0.0/12"])
    pod, result = add_pod(cni, conf)
    (ip,) = pod_ips(result)
    state_dir = tmp_path / "route-state"
    network = state_dir / "networks" / "rtt-route"
    (network / "ips").mkdir()
    claim = state_dir / "ips" / ip
    (network / "ips" / ip).write_text(claim.read_text().split("/", 1)[1])  # CONTAINER@IFNAME, as earlier versions
    claim.unlink()
    topo.node_exec(["ip", "route", "flush", "proto", "201"], check=True)
    topo.node_exec(["nft", "delete", "table", "inet", "cni_route"], check=True)
    attachments = network / "attachments"
    (record,) = attachments.iterdir()
    os.mkfifo(attachments / "fifo@eth0.json")
    os.symlink("/dev/zero", attachments / "zero@eth0.json")
    (attachments / "dir@eth0.json").mkdir()
    with open(attachments / "huge@eth0.json", "wb") as f:
        f.truncate(2 << 20)
    (attachments / "latin1@eth0.json").write_bytes(b'{"containerID": "\xe9"}')
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "attachments").mkdir(parents=True)
    os.link(record, elsewhere / "attachments" / "linked@eth0.json")
    (state_dir / "networks" / "escape").symlink_to(elsewhere)
    (state_dir / "networks" / "plain").write_text("")
    here = os.getcwd()
    os.chdir(attachments)  # (a socket's path is short)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind("sock@eth0.json")
        sock.close()
    finally:
        os.chdir(here)
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    os.symlink(conf, conf_dir / "10-route.conflist")
    os.symlink("/dev/zero", conf_dir / "20-zero.conflist")
    os.mkfifo(conf_dir / "30-fifo.conflist")
    (conf_dir / "40-dir.conflist").mkdir()
    return topo, state_dir, conf_dir, ip


def run(topo, route_plugin, *args):
    proc = subprocess.run(libcni.person_argv(topo.node, route_plugin, *args), capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc
    return proc


def test_doctor_changes_nothing_on_a_legacy_and_hostile_node(node, route_plugin):
    topo, state_dir, conf_dir, ip = node
    before = node_state(topo, state_dir)
    proc = run(topo, route_plugin, "doctor", "--conf-dir", str(conf_dir), "--state-dir", str(state_dir))
    assert proc.returncode == 1, proc  # the lost route and rule FAIL
    assert node_state(topo, state_dir) == before
    for skipped in ("20-zero.conflist", "30-fifo.conflist", "40-dir.conflist", "fifo@eth0.json", "zero@eth0.json",
                    "dir@eth0.json", "huge@eth0.json", "sock@eth0.json", "latin1@eth0.json", "network escape",
                    "network plain"):
        assert skipped in proc.stdout, (skipped, proc.stdout)
    assert f"pod {ip}" in proc.stdout and "now belongs to" not in proc.stdout  # the legacy claim is read


def test_reconcile_dry_run_changes_nothing_on_a_legacy_and_hostile_node(node, route_plugin):
    topo, state_dir, _, ip = node
    before = node_state(topo, state_dir)
    proc = run(topo, route_plugin, "reconcile", "--dry-run", "--state-dir", str(state_dir), "--log-file", "-")
    assert proc.returncode == 1, proc
    assert f"dry-run, not run: ip route replace {ip}/32 dev" in proc.stderr, proc.stderr  # by the legacy claim
    assert "dry-run, not run: nft add rule inet cni_route postrouting" in proc.stderr, proc.stderr
    assert node_state(topo, state_dir) == before
    assert "skipped network escape" in proc.stderr and "skipped network plain" in proc.stderr, proc.stderr
