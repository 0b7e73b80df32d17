"""`route doctor` on a real node: healthy, then one fault at a time, each named with its fix; --json, --probe.

The node: the test bed's, one macvlan pod attached through the real libcni with routeViaHost, forwarding on and
kube-proxy's nftables table present. Every fault is made with the node's own tools; where the fix is a command,
running the fix lines doctor printed must make the node healthy again.
"""
import json
import re
import subprocess

import pytest

from beds import libcni
from beds.libcni import add_pod, pod_ips
from beds.topology import MASTER, NODE_V4, SHIM, ip_json, node_sysctl
from cniroute.records import Attachment

VIA = ["10.96.0.0/12"]
NODE_CHECKS = ["python3", "ip -json", "nsenter", "nft", "kube-proxy"]


class Node:
    """The node under test: its namespace, the plugin, the chain, the pod."""

    def __init__(self, topo, route_plugin, conf, tmp_path, pod, pod_ip):
        self.topo, self.plugin, self.conf, self.tmp_path = topo, route_plugin, conf, tmp_path
        self.pod, self.pod_ip = pod, pod_ip
        self.state_dir = json.loads(conf.read_text())["plugins"][1]["stateDir"]

    def doctor(self, *args, conflist=True):
        """(exit status, report: JSON document, or text with --text), with stderr checked empty."""
        text = "--text" in args
        argv = [a for a in args if a != "--text"] + ([] if text else ["--json"])
        if conflist:
            argv += ["--conflist", str(self.conf)]
        argv += ["--state-dir", str(self.tmp_path / "no-other-records")]
        proc = subprocess.run(libcni.person_argv(self.topo.node, self.plugin, "doctor", *argv), capture_output=True,
                              text=True, timeout=120)
        assert proc.stderr == "", proc.stderr  # no log block, no traceback
        assert proc.returncode in (0, 1), proc
        return proc.returncode, proc.stdout if text else json.loads(proc.stdout)

    def sh(self, line):
        proc = self.topo.node_exec(["sh", "-c", line])
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)


@pytest.fixture
def node(topo, cni, chain, route_plugin, tmp_path):
    node_sysctl(topo, "net.ipv4.ip_forward", 1)
    assert topo.node_exec(["nft", "add", "table", "ip", "kube-proxy"]).returncode == 0  # kube-proxy's nftables mode
    conf = chain(routeViaHost=VIA)
    pod, result = add_pod(cni, conf)
    return Node(topo, route_plugin, conf, tmp_path, pod, pod_ips(result)[0])


def verdicts(report):
    return {c["subject"]: c["verdict"] for c in report["checks"]}


def failing(report):
    return {c["subject"]: c for c in report["checks"] if c["verdict"] != "OK"}


def node_state(topo, state_dir):
    """Everything doctor could change: links, addresses, routes of every table, rules, nft, sysctls, state."""
    sysctls = topo.node_exec(["sh", "-c", "grep -r . /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf "
                                          "/proc/sys/net/ipv4/ip_forward"]).stdout
    files = subprocess.run(["sh", "-c", f"cd {state_dir} && find . -type f | sort | xargs grep -H ."],
                           capture_output=True, text=True).stdout
    return (ip_json(topo, ["-d", "addr"]), ip_json(topo, ["route", "show", "table", "all"]),
            ip_json(topo, ["-6", "route", "show", "table", "all"]), ip_json(topo, ["rule"]),
            topo.node_exec(["nft", "list", "ruleset"]).stdout, sysctls, files)


def test_a_healthy_node_is_all_ok_and_doctor_changes_nothing(node):
    before = node_state(node.topo, node.state_dir)
    code, report = node.doctor()
    assert code == 0 and report["verdict"] == "OK", failing(report)
    assert report["counts"] == {"FAIL": 0, "WARN": 0, "OK": len(report["checks"])}
    assert list(verdicts(report)) == NODE_CHECKS + [
        "config", "IPv4 forwarding", f"master {MASTER}", f"shim {SHIM}", f"{SHIM} addresses", f"{SHIM} sysctls",
        f"{SHIM} managers", "rp_filter", "arp_ignore", f"masquerade {SHIM}", f"pod {node.pod_ip}"]
    found = {c["subject"]: c["found"] for c in report["checks"]}
    assert found["kube-proxy"] == "mode nftables (table kube-proxy)"
    assert found[f"{SHIM} addresses"] == f"carries {MASTER}'s {NODE_V4}/16 fd00::5/64"
    assert found[f"pod {node.pod_ip}"].startswith(f"ctr-{node.pod}@eth0, route on {SHIM}")
    assert node_state(node.topo, node.state_dir) == before
    code, text = node.doctor("--text")
    assert code == 0 and text.rstrip().endswith(f"0 FAIL, 0 WARN, {len(report['checks'])} OK: nothing fails"), text


def delete_masquerade_rule(node):
    chain = json.loads(node.topo.node_exec(["nft", "-j", "list", "chain", "inet", "cni_route", "postrouting"]).stdout)
    handles = [item["rule"]["handle"] for item in chain["nftables"] if "rule" in item]
    assert len(handles) == 2, chain  # the shim's rule for each family
    for handle in handles:
        node.sh(f"nft delete rule inet cni_route postrouting handle {handle}")


def asymmetric_with_strict_rp_filter(node):
    node.sh("sysctl -qw net.ipv4.conf.all.rp_filter=1")
    node.sh(f"ip rule add to {node.pod_ip} lookup 100 priority 100 && ip route add {node.pod_ip}/32 dev {MASTER} "
            "table 100")


def foreign_device(node):
    node.sh(f"ip link del {SHIM} && ip link add {SHIM} type veth peer name rtt-peer0")


def record_without_route(node):
    ghost = Attachment("ghost", "eth0", "rtt-route", MASTER, SHIM, ["192.168.1.250/32"], [])
    path = f"{node.state_dir}/networks/rtt-route/attachments/{ghost.owner}.json"
    node.sh(f"cat > {path} <<'EOF'\n{json.dumps(ghost.to_json())}\nEOF")


# fault: (how, {subject: text its found or fix must contain}, whether running the fix lines heals the node)
FAULTS = {
    "route deleted": (lambda n: n.sh(f"ip route del {n.pod_ip}/32 dev {SHIM}"),
                      {"pod": f"ip route replace {{ip}}/32 dev {SHIM} scope link proto 201"}, True),
    "shim down": (lambda n: n.sh(f"ip link set dev {SHIM} down"),
                  {f"shim {SHIM}": f"ip link set dev {SHIM} up", f"{SHIM} addresses": f"ip addr add fd00::5/64 dev "
                   f"{SHIM} noprefixroute nodad", "pod": f"ip route replace {{ip}}/32 dev {SHIM}"}, True),
    "MTU changed": (lambda n: n.sh(f"ip link set dev {SHIM} mtu 1400"),
                    {f"shim {SHIM}": f"ip link set dev {SHIM} mtu 1500"}, True),
    "forwarding off": (lambda n: n.sh("sysctl -qw net.ipv4.ip_forward=0"),
                       {"IPv4 forwarding": "sysctl -w net/ipv4/ip_forward=1"}, True),
    "masquerade rule deleted": (delete_masquerade_rule,
                                {f"masquerade {SHIM}": "nft add rule inet cni_route postrouting iifname"}, True),
    "strict rp_filter, asymmetric route": (asymmetric_with_strict_rp_filter,
                                           {"rp_filter": f"sysctl -w net/ipv4/conf/{SHIM}/rp_filter=2",
                                            "pod": f"the node sends to it via {MASTER}"}, False),
    "foreign device named like the shim": (foreign_device, {f"shim {SHIM}": "set `bridge`",
                                                            "pod": f"once {SHIM} is this plugin's shim again"}, False),
    "pod's neighbour entry FAILED": (lambda n: n.sh(f"ip neigh replace {n.pod_ip} dev {SHIM} nud failed"),
                                     {"pod": "neighbour FAILED"}, False),
    "state record without a route": (record_without_route,
                                     {"pod 192.168.1.250": f"ip route replace 192.168.1.250/32 dev {SHIM}"}, False),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_one_fault_fails_with_its_fix(node, fault):
    make, expected, healed_by_fix = FAULTS[fault]
    make(node)
    code, report = node.doctor()
    expected = {subject.replace("pod", f"pod {node.pod_ip}") if subject == "pod" else subject:
                text.format(ip=node.pod_ip) for subject, text in expected.items()}
    bad = failing(report)
    assert code == 1 and report["verdict"] == "FAIL", bad
    assert set(bad) == set(expected), bad
    for subject, text in expected.items():
        assert bad[subject]["verdict"] == "FAIL", bad[subject]
        assert text in bad[subject]["found"] + "\n".join(bad[subject]["fix"]), bad[subject]
    if healed_by_fix:
        for check in bad.values():
            for line in check["fix"]:
                if not line.startswith("#"):
                    node.sh(line)
        code, report = node.doctor()
        assert code == 0, failing(report)


def test_each_fault_is_named_in_the_text_with_the_same_verdicts_as_json(node):
    FAULTS["MTU changed"][0](node)
    FAULTS["forwarding off"][0](node)
    code, report = node.doctor()
    text_code, text = node.doctor("--text")
    assert code == text_code == 1
    for check in report["checks"]:
        line = rf"^  {check['verdict']:<4}  {re.escape(check['subject'])} +{re.escape(check['found'])}$"
        assert re.search(line, text, re.MULTILINE), (line, text)
        for fix in check["fix"]:
            assert re.search(rf"^ +(fix: )? +{re.escape(fix)}$|^ +fix: {re.escape(fix)}$", text, re.MULTILINE), fix
    assert re.search(r"^2 FAIL, 0 WARN, \d+ OK: exit 1$", text, re.MULTILINE), text


def test_a_record_whose_address_another_pod_owns_now_is_a_warning(node):
    """IPAM gave the address to a new pod before the old pod's DEL: the old record is stale, not a fault."""
    stale = Attachment("old-pod", "eth0", "rtt-route", MASTER, SHIM, [f"{node.pod_ip}/32"], [])
    node.sh(f"cat > {node.state_dir}/networks/rtt-route/attachments/{stale.owner}.json <<'EOF'\n"
            f"{json.dumps(stale.to_json())}\nEOF")
    code, report = node.doctor()
    assert code == 0, failing(report)
    warnings = [c for c in report["checks"] if c["verdict"] == "WARN"]
    assert len(warnings) == 1 and f"now belongs to rtt-route/ctr-{node.pod}@eth0" in warnings[0]["found"], warnings


def test_probe_finds_an_unreachable_pod(node):
    assert node.topo.pod_exec(node.pod, ["ip", "link", "set", "eth0", "down"]).returncode == 0
    code, report = node.doctor()
    assert code == 0, failing(report)  # nothing on the node says so
    code, report = node.doctor("--probe")
    pod = failing(report)[f"pod {node.pod_ip}"]
    assert code == 1 and pod["verdict"] == "FAIL" and "no answer to one ping in 1 s" in pod["found"], pod
    assert set(failing(report)) == {f"pod {node.pod_ip}"}
    assert node.topo.pod_exec(node.pod, ["ip", "link", "set", "eth0", "up"]).returncode == 0
    code, report = node.doctor("--probe")
    pod = next(c for c in report["checks"] if c["subject"] == f"pod {node.pod_ip}")
    assert code == 0 and pod["found"].endswith("answers ping"), failing(report)


def test_a_network_known_only_from_its_records_is_checked(node):
    """A Multus attachment has no conflist on the node: doctor finds it under the state dir."""
    argv = ["doctor", "--json", "--conf-dir", str(node.tmp_path / "empty"), "--state-dir", node.state_dir]
    proc = subprocess.run(libcni.person_argv(node.topo.node, node.plugin, *argv), capture_output=True, text=True,
                          timeout=120)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, failing(report)
    [section] = [s for s in report["sections"] if s["scope"] == "network rtt-route"]
    assert "no conflist here, only records" in section["title"], section
    assert verdicts(report)[f"pod {node.pod_ip}"] == "OK"
    assert "config" not in verdicts(report)


@pytest.mark.parametrize("mode,make", [
    ("nftables (table kube-proxy)", None),  # the node fixture's
    ("iptables (chain KUBE-SERVICES in table ip nat)",
     "nft delete table ip kube-proxy && iptables -t nat -N KUBE-SERVICES"),  # iptables-nft, Debian's default
    ("ipvs (device kube-ipvs0", "ip link add kube-ipvs0 type veth peer name rtt-peer1"),  # a dummy, where there is
    (None, "nft delete table ip kube-proxy"),
])
def test_kube_proxy_mode(node, mode, make):
    if make:
        node.sh(make)
    code, report = node.doctor()
    check = next(c for c in report["checks"] if c["subject"] == "kube-proxy")
    if mode:
        assert code == 0 and check["verdict"] == "OK" and check["found"].startswith(f"mode {mode}"), check
    else:  # routeViaHost sends Service traffic to the node, and nothing there translates it
        assert code == 0 and check["verdict"] == "WARN" and check["found"].startswith("none found"), check
