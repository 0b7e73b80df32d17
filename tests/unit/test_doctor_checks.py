"""route doctor's logic on a fake node: the prerequisites' verdicts, who manages the shim, the probe's bound, and
the parsers of nmcli and networkctl. Real namespaces: tests/e2e/test_doctor.py."""
import argparse
import json
import re

import pytest
from helpers import POD_NETNS, call, netconf, prev_result, run_person

from cniroute import PYTHON_LAUNCH, doctor
from cniroute.doctor import managers as shim_managers
from cniroute.doctor import pods
from cniroute.doctor import prerequisites as node_needs
from cniroute.doctor.verdicts import Docs, ok
from cniroute.errors import CommandFailed
from cniroute.journal import Journal
from cniroute.runner import Runner
from fakeip import FakeHost

GOOD = {"python3": (0, "/usr/bin/python3\n3.11.2\n", ""), "ip": (0, '[{"ifname": "lo"}]', ""),
        "nsenter": (0, "nsenter from util-linux 2.38.1\n", ""), "nft": (0, "nftables v1.0.6\n", "")}
MISSING = (127, "", "env: 'X': No such file or directory\n")


def node_programs(host, **answers):
    """/usr/bin/env PATH=... PROGRAM ...: answered from GOOD, overridden by `answers` (program -> answer); python3
    as the plugin's header starts it, through /bin/sh."""
    table = {**GOOD, **answers}

    def env(args):
        assert args[0] == f"PATH={node_needs.NODE_PATH}", args  # the runtime's PATH, not ours
        program = args[1]
        if program == "/bin/sh":
            assert args[2:] == ["-c", f'{PYTHON_LAUNCH} -c "$1"', "sh", node_needs.PYTHON_PROBE], args
            program = "python3"
        if program == "ip" and args[2:] == ["-V"]:
            return 0, "ip utility, iproute2-6.1.0\n", ""
        return table[program]

    host.programs["/usr/bin/env"] = env


def verdicts(checks):
    return {c.subject: (c.verdict, c.found) for c in checks}


def prerequisites(host, routes_via_host=False):
    return verdicts(node_needs.prerequisites(Runner(Journal(), host=host), routes_via_host))


def test_a_node_with_everything(host):
    node_programs(host)
    found = prerequisites(host)
    assert found == {"python3": ("OK", "/usr/bin/python3 is Python 3.11.2 (the plugin's `exec python3` finds it)"),
                     "ip -json": ("OK", "ip utility, iproute2-6.1.0"),
                     "nsenter": ("OK", "nsenter from util-linux 2.38.1"), "nft": ("OK", "nftables v1.0.6")}
    assert [argv[:3] for argv in host.calls] == [["/usr/bin/env", f"PATH={node_needs.NODE_PATH}", program] for program
                                                in ("/bin/sh", "ip", "ip", "nsenter", "nft")]  # probes, nothing else


@pytest.mark.parametrize("answer,verdict,found", [
    ((0, "/usr/bin/python3\n3.9.0\n", ""), "OK", "/usr/bin/python3 is Python 3.9.0"),
    ((0, "/usr/bin/python3\n3.8.10\n", ""), "FAIL", "/usr/bin/python3 is Python 3.8.10; route needs Python 3.9 or "
                                                     "newer"),
    ((0, "/usr/bin/python3\n3.10.12\n", ""), "OK", "Python 3.10.12"),  # compared as numbers, not text
    (MISSING, "FAIL", "no python3 runs: `/bin/sh -c 'exec python3 -S -E'` with PATH="),
    ((1, "", "Traceback (most recent call last):\n  ...\n"), "FAIL", "no python3 runs"),
])
def test_python3(host, answer, verdict, found):
    node_programs(host, python3=answer)
    got = prerequisites(host)["python3"]
    assert got[0] == verdict and found in got[1], got


def test_ip_without_json_and_missing_tools(host):
    node_programs(host, ip=(255, "", 'Option "-json" is unknown, try "ip -help".\n'), nsenter=MISSING)
    found = prerequisites(host)
    assert found["ip -json"] == ("FAIL", 'ip -json does not work (iproute2 older than 4.19?): Option "-json" is '
                                         'unknown, try "ip -help".')
    assert found["nsenter"][0] == "FAIL" and "the plugin needs it" in found["nsenter"][1]


def test_nft_is_needed_only_with_route_via_host(host):
    node_programs(host, nft=MISSING)
    assert prerequisites(host)["nft"][0] == "OK"
    assert prerequisites(host, routes_via_host=True)["nft"] == \
        ("FAIL", "not found: env: 'X': No such file or directory; routeViaHost needs it")


def test_a_missing_env_is_a_missing_python3(host):
    """A node image without a shell (Talos): the runner cannot even start /usr/bin/env."""
    def absent(args):
        raise CommandFailed("/usr/bin/env not found on PATH", "install the package that provides it")

    host.programs["/usr/bin/env"] = absent
    found = prerequisites(host)
    assert {subject: verdict for subject, (verdict, _) in found.items()} == \
        {"python3": "FAIL", "ip -json": "FAIL", "nsenter": "FAIL", "nft": "OK"}
    assert "/usr/bin/env not found on PATH" in found["python3"][1]


def managers(host, nmcli, networkctl, in_node_namespace=True):
    host.in_node_namespace = in_node_namespace
    host.programs.update(nmcli=lambda args: nmcli, networkctl=lambda args: networkctl)
    return shim_managers.check(Runner(Journal(), host=host), "eno1.host")


def test_network_managers_leaving_the_shim_alone(host):
    check = managers(host, (0, "eno1:connected\neno1.host:unmanaged\n", ""),
                     (0, "  5 eno1.host ether routable unmanaged\n", ""))
    assert check == ok("eno1.host managers",
                       "NetworkManager: leaves it alone; systemd-networkd: leaves it alone", Docs.MANAGERS)


def test_network_managers_that_manage_the_shim_are_warned_about_with_the_setting_that_stops_them(host):
    check = managers(host, (0, "eno1.host:connected\n", ""), (0, "  5 eno1.host ether routable configured\n", ""))
    assert check.verdict == "WARN"
    assert "NetworkManager manages it (connected)" in check.found and "systemd-networkd manages it (configured)" \
        in check.found
    assert "nmcli general reload conf" in check.fix and "networkctl reload" in check.fix
    assert any("unmanaged-devices=interface-name:%s" in line and "eno1.host >" in line for line in check.fix)
    assert any("Unmanaged=yes" in line for line in check.fix)


def test_network_managers_absent_or_not_running(host):
    def absent(args):
        raise CommandFailed("nmcli not found on PATH", "")

    host.programs["nmcli"] = absent
    host.programs["networkctl"] = lambda args: (1, "", "Failed to connect system bus: No such file or directory\n")
    check = shim_managers.check(Runner(Journal(), host=host), "eno1.host")
    assert check == ok("eno1.host managers", "NetworkManager: nmcli not found on PATH; systemd-networkd: not "
                       "running (Failed to connect system bus: No such file or directory)", Docs.MANAGERS)


def test_network_managers_are_not_asked_outside_the_nodes_namespace(host):
    check = managers(host, (0, "eno1.host:connected\n", ""), (0, "", ""), in_node_namespace=False)
    assert check.verdict == "OK" and check.found.startswith("not asked") and host.calls == []


def test_the_probe_pings_at_most_the_limit_each_once_with_a_short_wait(host):
    host.programs["ping"] = lambda args: (1, "", "")
    probe = pods.PodChecks(Runner(Journal(), host=host), probe=True)
    found = [probe.ping(f"192.168.1.{n}", [], []) for n in range(pods.PROBE_LIMIT + 3)]
    assert [argv[1:5] for argv in host.calls] == [["-c", "1", "-W", str(pods.PROBE_WAIT)]] * pods.PROBE_LIMIT
    assert found[-1] == f"not pinged (--probe pings at most {pods.PROBE_LIMIT})"
    assert found[0] == f"no answer to one ping in {pods.PROBE_WAIT} s"


def test_parsers():
    assert shim_managers.nm_state("lo:unmanaged\neno1.host:connected (externally)\n", "eno1.host") == \
        "connected (externally)"
    assert shim_managers.nm_state("eno1:connected\n", "eno1.host") is None
    assert shim_managers.networkd_state("  1 lo loopback carrier unmanaged\n  3 eno1.host ether routable configuring\n",
                                 "eno1.host") == "configuring"
    assert shim_managers.networkd_state("", "eno1.host") is None


def test_a_node_without_ip_gets_a_report_not_a_traceback(host, tmp_path, capsys):
    def absent(args):
        raise CommandFailed("ip not found on PATH", "install the package that provides it")

    node_programs(host, ip=MISSING)
    host.programs["ip"] = absent
    host.programs["nft"] = absent
    conflist = tmp_path / "10-route.conflist"
    conflist.write_text('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "macvlan"}, '
                        f'{{"type": "route", "master": "eno1", "stateDir": "{tmp_path}/state"}}]}}')
    args = argparse.Namespace(conf_dir=[], conflist=[str(conflist)], state_dir=str(tmp_path / "none"), json=False,
                              probe=False, node_root=None)
    assert doctor.handle(args, host) == 1
    text = capsys.readouterr().out
    assert re.search(r"^  FAIL  ip -json +no ip: env: 'X': No such file or directory$", text, re.M), text
    assert re.search(r"^  FAIL  reading the node +ip not found on PATH: install the package", text, re.M), text
    assert re.search(r"^  OK    config +master eno1, bridge \(derived\)", text, re.M), text


# Which section of docs/doctor.md explains a check, by the shape of its subject: the first that matches; none, the
# page alone. The checks name their sections where they are made; this is what a reader expects under `see:`.
SECTION_OF = (
    (r"python3|ip -json|nsenter|nft|reading the node", "the-nodes-programs"),
    (r"kube-proxy", "kube-proxy"),
    (r"config|config .+|master|record .+", "configs-and-records"),
    (r"master \S+", "the-master"),
    (r"shim \S+", "the-shim"),
    (r"\S+ addresses", "the-shims-addresses"),
    (r"\S+ sysctls", "the-shims-sysctls"),
    (r"\S+ managers", "network-managers"),
    (r"rp_filter|arp_ignore", "rp_filter-and-arp_ignore"),
    (r"IPv[46] forwarding|masquerade \S+", "routeviahost-forwarding-and-the-masquerade-rule"),
    (r"pod \S+", "pod-addresses"),
)


def expected_docs(subject):
    section = next((s for pattern, s in SECTION_OF if re.fullmatch(pattern, subject)), None)
    return f"{Docs.PAGE}#{section}" if section else Docs.PAGE


def test_every_check_names_the_section_that_explains_it(monkeypatch, host, tmp_path):
    """A node with a pod (routeViaHost), an unreadable conflist, record and state dir, checked healthy and then
    broken: every section is named, each by the checks it explains."""
    node_programs(host)
    host.programs.update(nmcli=lambda args: (0, "eno1.host:connected\n", ""), networkctl=lambda args: (1, "", ""))
    host.pod(POD_NETNS, addresses=["192.168.1.2/16"])
    conf = netconf(tmp_path / "state", prev_result("192.168.1.2/16"), routeViaHost=["10.96.0.0/12"])
    assert call(monkeypatch, host, "ADD", conf)[0] == 0
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-route.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "default", "plugins": [{"type": "macvlan"}, conf]}))
    (conf_dir / "20-broken.conflist").write_text("{")
    (tmp_path / "state" / "networks" / "default" / "attachments" / "c2@eth0.json").write_text("[]")
    named = {}
    for broken in (False, True):
        if broken:
            host.routes = [r for r in host.routes if r["dev"] != "eno1.host"]
            host.links["eno1.host"].update(up=False, mtu=1400)
            host.sysctls["net/ipv4/ip_forward"] = "0"
            host.nft = None
        code, out, _ = run_person(host, "doctor", "--json", "--conf-dir", conf_dir, "--state-dir",
                                  conf_dir / "20-broken.conflist")  # a state dir that cannot be read
        checks = json.loads(out)["checks"]
        assert code == (1 if broken else 0) and (broken or {c["verdict"] for c in checks} == {"OK", "WARN"})
        named.update({(c["subject"], c["verdict"]): c["docs"] for c in checks})
    assert {subject: docs for (subject, _), docs in named.items()} == \
        {subject: expected_docs(subject) for subject, _ in named}
    assert set(named.values()) == {*Docs.SECTIONS, Docs.PAGE}
    assert {verdict for _, verdict in named} == {"OK", "WARN", "FAIL"}


NFT = {"1.0.2": "nftables v1.0.2 (Lester Gooch)", "1.0.6": "nftables v1.0.6 (Lester Gooch #5)",
       "1.1.1": "nftables v1.1.1 (Commodore Bullmoose #2)", "1.1.2": "nftables v1.1.2 (Commodore Bullmoose #3)",
       "1.1.3": "nftables v1.1.3 (Commodore Bullmoose #4)"}


def test_nft_version():
    assert node_needs.nft_version(NFT["1.0.6"] + "\n") == (1, 0, 6)
    assert node_needs.nft_version("nftables v0.9 (x)") == (0, 9, 0)
    assert node_needs.nft_version("nft: command not found") is None


@pytest.mark.parametrize("here, node, verdict", [
    ("1.1.3", "1.0.6", "FAIL"), ("1.1.2", "1.1.1", "FAIL"),  # set user data the node's nft crashes reading
    ("1.1.3", "1.1.2", "OK"), ("1.1.1", "1.0.2", "OK"), ("1.0.6", "1.1.3", "OK"),
    (None, "1.0.6", "OK"), ("1.1.3", None, "OK"),  # no nft on one side: nothing to compare
])
def test_the_image_nft_must_write_nothing_the_nodes_nft_cannot_read(host, here, node, verdict):
    def nft(args):
        assert args == ["--version"], args
        return 0, NFT[here] + "\n", ""

    def absent(args):
        raise CommandFailed("nft not found on PATH", "install the package that provides it")

    host.programs["nft"] = nft if here else absent
    node_host = FakeHost()
    node_programs(node_host, nft=(0, NFT[node] + "\n", "") if node else MISSING)
    check = node_needs.nft_versions(Runner(Journal(), host=host), Runner(Journal(), host=node_host))
    assert check.subject == "nft versions" and check.verdict == verdict, check
    if here and node:
        assert check.found.startswith(f"this nft {here}, the node's {node}"), check
    if verdict == "FAIL":
        assert "crashes reading" in check.found and check.fix[0].startswith("# build the image on a base"), check


def test_doctor_given_the_nodes_programs_checks_those_and_compares_the_nfts(host, tmp_path):
    """As `route doctor --node-root` in a container of the image: the node's programs run chrooted (here, a fake
    node's), the nft compared is this process's."""
    host.programs["nft"] = lambda args: (0, NFT["1.1.3"] + "\n", "")
    node_host = FakeHost()
    node_programs(node_host, nft=(0, NFT["1.0.6"] + "\n", ""))
    runner = Runner(Journal(), dry_run=True, host=host)
    [node] = doctor.Doctor(runner, node_programs=Runner(Journal(), host=node_host)).run([], [], str(tmp_path))
    assert [(c.subject, c.verdict) for c in node.checks] == [
        ("python3", "OK"), ("ip -json", "OK"), ("nsenter", "OK"), ("nft", "OK"), ("nft versions", "FAIL"),
        ("kube-proxy", "OK")]
    assert not [argv for argv in host.calls if argv[0] == "/usr/bin/env"]  # every probe ran on the node
    node_programs(host)
    [alone] = doctor.Doctor(runner).run([], [], str(tmp_path))
    assert "nft versions" not in [c.subject for c in alone.checks]  # without the node's: one nft, nothing to compare
