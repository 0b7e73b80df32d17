"""Run the plugin in-process as a runtime would: CNI_* environment, config on stdin, JSON on stdout."""
import contextlib
import io
import json
import sys

from cniroute import cli, person

POD_NETNS = "/var/run/netns/pod1"
BASE_ENV = {"CNI_CONTAINERID": "c1", "CNI_NETNS": POD_NETNS, "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin"}


def prev_result(*addresses, version="1.0.0", ifname="eth0", sandbox=POD_NETNS):
    ips = [{"interface": 0, "address": a, **({"version": "6" if ":" in a else "4"} if version.startswith("0.") else {})}
           for a in addresses]
    return {"cniVersion": version, "interfaces": [{"name": ifname, "mac": "02:00:00:00:00:01", "sandbox": sandbox}],
            "ips": ips}


def multus_pod(host, ipv6=False):
    """The pod at POD_NETNS as Multus leaves it before route's ADD on net1: eth0 as ptp makes it (10.244.0.2/24,
    default via 10.244.0.1 on its own /32 route; with `ipv6` also fd44::2/64), net1 as macvlan does
    (192.168.1.2/16 and its connected route; fd00::100/64). On the node, ptp's veth holds the gateway addresses."""
    host.add_link("veth0a1b2c3d", kind="veth", addresses=["10.244.0.1/32", *(["fd44::1/128"] if ipv6 else [])])
    pod = host.pod(POD_NETNS, addresses=["10.244.0.2/24", *(["fd44::2/64"] if ipv6 else [])])
    pod.add_route("10.244.0.1/32", "eth0", protocol="unspec")
    pod.add_route("default", "eth0", protocol="unspec", scope="global", gateway="10.244.0.1")
    pod.add_link("net1", addresses=["192.168.1.2/16", *(["fd00::100/64"] if ipv6 else [])])
    pod.add_route("192.168.0.0/16", "net1", protocol="kernel")
    if ipv6:
        pod.add_route("fd44::1/128", "eth0", protocol="unspec")
        pod.add_route("::/0", "eth0", protocol="unspec", scope="global", gateway="fd44::1")
        pod.add_route("fd00::/64", "net1", protocol="kernel")
    return pod


def netconf(state_dir, prev=None, version="1.0.0", **keys):
    conf = {"cniVersion": version, "name": "default", "type": "route", "master": "eno1", "stateDir": str(state_dir)}
    conf.update(keys)
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def call(monkeypatch, host, command, conf, **env):
    """(exit code, parsed stdout or None, stderr text)."""
    environ = {**BASE_ENV, "CNI_COMMAND": command, **env}
    for name in ("CNI_COMMAND", *BASE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.TextIOWrapper(io.BytesIO(data)), out, err
    try:
        code = cli.main([], host=host)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    text = out.getvalue()
    return code, (json.loads(text) if text else None), err.getvalue()


def run_person(host, *argv):
    """(exit code, stdout, stderr) of `route ARGV` (a person's command) against the fake host."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = person.main([str(a) for a in argv], host=host)
    return code, out.getvalue(), err.getvalue()
