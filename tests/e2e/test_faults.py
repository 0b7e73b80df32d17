"""Surviving faults for real: kill -9 mid-call, a hung ip, 64 pods at once, GC and STATUS (CNI 1.1).

libcni 1.1.2 has neither GC nor STATUS, so those (and the kill -9 storm) call the plugin directly inside
the node namespace, exactly as a runtime would: CNI_* environment, config on stdin.
"""
import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from beds import libcni
from beds.topology import MASTER, PROTO, SHIM


def config(tmp_path, version="1.1.0", prev=None, **keys):
    conf = {"cniVersion": version, "name": "rtt-faults", "type": "route", "master": MASTER,
            "stateDir": str(tmp_path / "state"), **keys}
    if prev:
        conf["prevResult"] = {"cniVersion": version, "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
                              "ips": [{"interface": 0, "address": a} for a in prev]}
    return conf


def call(topo, route_plugin, command, conf, timeout=60, **env):
    """(exit code, parsed stdout, stderr) of one plugin call in the node namespace."""
    proc = subprocess.run(libcni.plugin_argv(topo.node, route_plugin, command, **env), input=json.dumps(conf),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None), proc.stderr


def our_routes(topo):
    found = []
    for family in ("-4", "-6"):
        out = topo.node_exec(["ip", "-json", family, "route", "show", "proto", PROTO]).stdout
        found += [r["dst"] for r in json.loads(out or "[]")]
    return sorted(found)


def state_files(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "state").rglob("*") if p.is_file()
                  and p.parent.name != "locks")


def test_kill_9_at_random_moments_then_add_check_del_succeed(topo, route_plugin, tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    pods = {f"k{i}": f"192.168.2.{i + 2}/16" for i in range(4)}
    probe = config(tmp_path, prev=["192.168.2.200/16"])
    assert call(topo, route_plugin, "ADD", probe, container_id="probe")[0] == 0  # makes the shim: not timed
    durations = []  # how long one call takes here, so that kills land anywhere inside one
    for verb in ("DEL", "ADD", "DEL", "ADD", "DEL"):
        started = time.monotonic()
        assert call(topo, route_plugin, verb, probe, container_id="probe")[0] == 0
        durations.append(time.monotonic() - started)
    duration = min(durations)  # the fastest: a busy machine's slow call would let most calls end before the kill
    killed = 0
    for _ in range(40):
        cid, address = rng.choice(sorted(pods.items()))
        verb = rng.choice(["ADD", "ADD", "DEL"])
        argv = libcni.plugin_argv(topo.node, route_plugin, verb, container_id=cid)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.stdin.write(json.dumps(config(tmp_path, prev=[address])).encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0, 0.9 * duration))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # `ip netns exec` and env exec, so this pid is the plugin
            killed += 1
        proc.wait()
    assert killed >= 20, f"seed {seed}: only {killed} of 40 calls were still running when killed"
    for cid, address in pods.items():
        conf = config(tmp_path, prev=[address])
        for verb in ("ADD", "CHECK"):
            code, out, err = call(topo, route_plugin, verb, conf, container_id=cid)
            assert code == 0, (seed, verb, cid, out, err)
    assert our_routes(topo) == sorted(a.split("/")[0] for a in pods.values())
    for cid, address in pods.items():
        code, out, err = call(topo, route_plugin, "DEL", config(tmp_path, prev=[address]), container_id=cid)
        assert code == 0, (seed, cid, out, err)
    assert our_routes(topo) == []
    assert [f for f in state_files(tmp_path) if not f.endswith(".tmp")] == []


def test_a_half_configured_shim_and_a_torn_state_file_are_repaired(topo, route_plugin, tmp_path):
    """What a kill between two steps leaves: a shim that is down and bare, a state file cut short."""
    shim = ["ip", "link", "add", SHIM, "link", MASTER, "type", "macvlan", "mode", "bridge"]
    assert topo.node_exec(shim).returncode == 0
    torn = tmp_path / "state" / "networks" / "rtt-faults" / "attachments"
    torn.mkdir(parents=True)
    (torn / "c1@eth0.json").write_text('{"containerID": "c1", "bri')
    conf = config(tmp_path, prev=["192.168.2.50/16"])
    for verb in ("ADD", "CHECK", "DEL"):
        code, out, err = call(topo, route_plugin, verb, conf)
        assert code == 0, (verb, out, err)
    link = json.loads(topo.node_exec(["ip", "-json", "addr", "show", "dev", SHIM]).stdout)[0]
    assert "UP" in link["flags"] and any(a["local"] == "192.168.0.5" for a in link["addr_info"])
    assert our_routes(topo) == []


def test_state_without_route_and_route_without_state(topo, route_plugin, tmp_path):
    conf_a, conf_b = config(tmp_path, prev=["192.168.2.60/16"]), config(tmp_path, prev=["192.168.2.61/16"])
    assert call(topo, route_plugin, "ADD", conf_a, container_id="a")[0] == 0
    assert call(topo, route_plugin, "ADD", conf_b, container_id="b")[0] == 0
    topo.node_exec(["ip", "route", "del", "192.168.2.60/32", "dev", SHIM])  # a: state, no route
    for path in (tmp_path / "state").rglob("b@eth0.json"):
        path.unlink()  # b: route, no state
    assert call(topo, route_plugin, "CHECK", conf_a, container_id="a")[0] != 0
    assert call(topo, route_plugin, "ADD", conf_a, container_id="a")[0] == 0
    assert call(topo, route_plugin, "CHECK", conf_a, container_id="a")[0] == 0
    assert call(topo, route_plugin, "CHECK", conf_b, container_id="b")[0] == 0
    assert call(topo, route_plugin, "DEL", conf_a, container_id="a")[0] == 0
    assert call(topo, route_plugin, "DEL", conf_b, container_id="b")[0] == 0  # prevResult still names it
    assert our_routes(topo) == []


HUNG = "sleep 2963"  # an ip that hangs, with a command line nothing else on the machine has (pgrep is global)


def test_a_hung_ip_gives_a_cni_error_not_a_hung_runtime(topo, route_plugin, tmp_path):
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "ip").write_text(f"#!/bin/sh\nexec {HUNG}\n")
    (fake / "ip").chmod(0o755)
    conf = config(tmp_path, prev=["192.168.2.70/16"], ipTimeoutSeconds=1)
    for verb in ("ADD", "DEL", "CHECK"):
        started = time.monotonic()
        code, out, _ = call(topo, route_plugin, verb, conf, timeout=30, PATH=f"{fake}:{os.environ['PATH']}")
        elapsed = time.monotonic() - started
        assert code == 1 and out["code"] == 101 and "timed out after 1" in out["msg"], (verb, out)
        assert elapsed < 15, f"{verb} took {elapsed:.1f} s"  # a bound for a hang, not a performance target
    assert not subprocess.run(["pgrep", "-fx", HUNG], capture_output=True).stdout, "the hung ip was left"


def test_64_parallel_adds_then_64_parallel_dels(topo, route_plugin, tmp_path):
    pods = {f"p{i}": f"192.168.3.{i + 2}/16" for i in range(64)}

    def run(verb):
        with ThreadPoolExecutor(64) as pool:
            return list(pool.map(lambda item: call(topo, route_plugin, verb, config(tmp_path, prev=[item[1]]),
                                                   container_id=item[0]), pods.items()))

    added = run("ADD")
    assert [r[1] for r in added if r[0] != 0] == []
    assert our_routes(topo) == sorted(a.split("/")[0] for a in pods.values())
    shims = [link["ifname"] for link in json.loads(topo.node_exec(["ip", "-json", "-d", "link", "show"]).stdout)
             if link.get("linkinfo", {}).get("info_kind") == "macvlan"]
    assert shims == [SHIM]
    deleted = run("DEL")
    assert [r[1] for r in deleted if r[0] != 0] == []
    assert our_routes(topo) == []
    assert state_files(tmp_path) == []


def test_gc_removes_stale_keeps_valid_and_never_touches_foreign_routes(topo, route_plugin, tmp_path):
    for i, cid in enumerate(("keep", "stale1", "stale2")):
        assert call(topo, route_plugin, "ADD", config(tmp_path, prev=[f"192.168.4.{i + 2}/16", f"fd00::4:{i + 2}/64"]),
                    container_id=cid)[0] == 0
    assert topo.node_exec(["ip", "route", "add", "192.168.4.99/32", "dev", SHIM, "proto", "static"]).returncode == 0
    gc = config(tmp_path, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    code, out, err = call(topo, route_plugin, "GC", gc)
    assert (code, out) == (0, None), err
    assert our_routes(topo) == ["192.168.4.2", "fd00::4:2"]
    assert json.loads(topo.node_exec(["ip", "-json", "route", "show", "192.168.4.99/32"]).stdout)[0]["dev"] == SHIM
    code, _, _ = call(topo, route_plugin, "GC", config(tmp_path, **{"cni.dev/valid-attachments": []}))
    assert code == 0 and our_routes(topo) == []
    assert json.loads(topo.node_exec(["ip", "-json", "link", "show", "dev", SHIM]).stdout)  # the shim stays


@pytest.mark.parametrize("damage, words", [
    (None, None),
    (["ip", "link", "set", "dev", MASTER, "down"], f"master {MASTER} is down"),
    (["ip", "link", "del", MASTER], f"master {MASTER} does not exist"),
])
def test_status(topo, route_plugin, tmp_path, damage, words):
    if damage:
        assert topo.node_exec(damage).returncode == 0
    before = topo.node_exec(["ip", "-json", "-d", "addr", "show"]).stdout
    code, out, err = call(topo, route_plugin, "STATUS", config(tmp_path))
    if words is None:
        assert (code, out) == (0, None), err
    else:
        assert code == 1 and out["code"] == 50 and words in out["msg"]
    assert topo.node_exec(["ip", "-json", "-d", "addr", "show"]).stdout == before  # STATUS changes nothing
