"""`route doctor`: what is wrong on this node for the plugin, and what fixes it. It changes nothing.

    route doctor [--conf-dir DIR | --conflist FILE]... [--state-dir DIR] [--json] [--probe]

The node: what the plugin needs to run (`prerequisites`, which `route install --node-root` also checks before it
installs) and the kube-proxy mode. Then every network whose config chains `route` (the conf dirs, default
/etc/cni/net.d, and --conflist files) and every network with attachments recorded under a state dir (--state-dir,
default /run/cni-route, and each config's stateDir; a Multus attachment has no conflist on the node): its master
and shim, the shim's addresses and sysctls, NetworkManager or systemd-networkd on the shim, effective rp_filter
and arp_ignore, forwarding and the masquerade rule for routeViaHost, and for every recorded pod address its route,
the path the kernel takes to it, its neighbour entry and, with --probe, one ping.

Each check is OK, WARN or FAIL, with what was found and, unless OK, the lines that fix it: commands exactly as
they would be run, and comments (`# ...`) where a person must choose. Exit 0 when nothing FAILs, 1 otherwise.

Every host query goes through the Runner, whose Journal is never written (doctor is no CNI call and leaves no log
block); doctor takes no lock and writes no state. --probe pings each recorded pod address once, at most
PROBE_LIMIT of them, waiting PROBE_WAIT s for each.
"""
import ipaddress
import json
import os
import re
import shlex
import socket
import time
from collections import namedtuple

from . import PYTHON_LAUNCH, __version__, config, files, iproute, nft, plugin, routes, shim, via_host
from .errors import CNIError, CommandFailed
from .interpreter import OLDEST
from .journal import Journal
from .node import Node
from .runner import ANY_STATUS, Completed, Runner
from .store import Store
from .store import networks as recorded_networks

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GRAVITY = (OK, WARN, FAIL)
DEFAULT_CONF_DIR = "/etc/cni/net.d"
CONF_SUFFIXES = (".conflist", ".conf", ".json")  # what libcni reads from a conf dir
# A runtime's PATH (docs/install.md#what-a-node-needs): the plugin's header searches it for python3 (PYTHON_LAUNCH), and
# the plugin for ip, nsenter and nft.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_PROBE = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"
# As dist/route's header starts it. $0 is the name sh puts before its own errors ("sh: 1: exec: python3: not
# found"): the probe goes in $1, or a node without python3 would be told the probe's source.
PYTHON_STARTED = ["/bin/sh", "-c", f'{PYTHON_LAUNCH} -c "$1"', "sh", PYTHON_PROBE]
PROBE_LIMIT = 32
PROBE_WAIT = 1
ARP_IGNORE_NEVER = 8  # "do not reply for all local addresses"; 0-3 answer for the shim's own addresses, 4-7 all


class Check(namedtuple("Check", "subject verdict found fix")):
    """One line of the report: what was checked, OK/WARN/FAIL, what the node has, and the lines that fix it."""

    __slots__ = ()

    def to_json(self, scope):
        return {"scope": scope, "subject": self.subject, "verdict": self.verdict, "found": self.found,
                "fix": list(self.fix), "docs": docs_page(self.subject)}


# The section of docs/doctor.md that explains each check, by the shape of its subject: the first that matches.
DOCS_PAGE = "docs/doctor.md"
DOCS_SECTIONS = (
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


def docs_page(subject):
    """Where docs/doctor.md explains the check of *subject*, e.g. "docs/doctor.md#pod-addresses"."""
    anchor = next((a for pattern, a in DOCS_SECTIONS if re.fullmatch(pattern, subject)), None)
    return f"{DOCS_PAGE}#{anchor}" if anchor else DOCS_PAGE


def ok(subject, found):
    return Check(subject, OK, found, ())


def worst(verdicts):
    return max(verdicts, key=GRAVITY.index, default=OK)


class Section(namedtuple("Section", "scope title checks")):
    """The checks of the node (scope "node") or of one network ("network NAME")."""

    __slots__ = ()


# Per recorded pod address: {prefix: routes to it}, {address: the device the kernel sends it through},
# {address: its neighbour state}.
Observed = namedtuple("Observed", "routes paths neighbours")


class Network(namedtuple("Network", "name conflist conf error state_dir records")):
    """A network to check. conflist: its file, None when only records name it; conf: its `route` entry as the
    plugin reads it (config.NetConf), None when `error` says why it cannot be read; records: {owner: Attachment,
    or None when unreadable} under state_dir."""

    __slots__ = ()

    def via_host_cidrs(self):
        cidrs = list(self.conf.route_via_host) if self.conf else []
        return cidrs + [cidr for record in self.records.values() if record for cidr, _ in record.via_host]


# --- the networks ---

def find_networks(conf_dirs, conflists, state_dir):
    """The Networks to check, and Checks of config files that could not be read."""
    found, unreadable = [], []
    for path in _config_files(conf_dirs, conflists, unreadable):
        try:  # as the plugin reads its stdin: at most 1 MiB; and a regular file only, never waited for
            document = json.loads(files.read_text(path, follow=True))
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            unreadable.append(Check(f"config {path}", WARN, f"skipped, cannot be read as JSON: {reason}",
                                    (f"# a runtime fails or skips it too: fix or remove {path}",)))
            continue
        found += _networks_of(path, document, unreadable)
    state_dirs = [state_dir] + [n.state_dir for n in found if n.state_dir]
    known = {(n.name, n.state_dir) for n in found}
    for top in dict.fromkeys(state_dirs):
        try:
            names = recorded_networks(top)
        except OSError as e:
            unreadable.append(_unreadable_state(top, e))
            continue
        for name in names:
            records = _records(top, name, unreadable) if (name, top) not in known else None
            if records is not None:
                found.append(Network(name, None, None, None, top, records))
    return found, unreadable


def _config_files(conf_dirs, conflists, unreadable):
    paths = list(conflists)
    for directory in conf_dirs:
        try:
            names = sorted(files.list_dir(directory))
        except FileNotFoundError:
            continue  # no conf dir: no network configured here (the records may still name some)
        except OSError as e:
            unreadable.append(Check(f"conf dir {directory}", WARN, f"skipped, cannot be listed: {files.why(e)}",
                                    (f"# a runtime cannot read it either: look at {directory}",)))
            continue
        paths += [os.path.join(directory, n) for n in names if n.endswith(CONF_SUFFIXES)]
    return paths


def _unreadable_state(where, error):
    return Check(f"state {where}", WARN, f"skipped, cannot be read: {files.why(error)}",
                 ("# the plugin's calls fail on it too (code 5): look at it, and remove what it did not write",))


def _networks_of(path, document, unreadable):
    """A Network per `route` entry of a conflist (or a single config of type route)."""
    if not isinstance(document, dict):
        return []
    entries = document["plugins"] if isinstance(document.get("plugins"), list) else [document]
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "route":
            continue
        merged = dict(entry)  # as libcni passes it: the list's name and cniVersion
        merged.update({key: document[key] for key in ("cniVersion", "name") if key in document})
        try:
            conf = config.load(merged)
        except CNIError as e:
            found.append(Network(str(merged.get("name")), path, None, str(e), None, {}))
            continue
        found.append(Network(conf.name, path, conf, None, conf.state_dir,
                             _records(conf.state_dir, conf.name, unreadable) or {}))
    return found


def _records(state_dir, network, unreadable):
    """{file stem: record or None} of a network's attachments; None (with a Check in `unreadable`) when they
    cannot be listed."""
    store = Store(state_dir, dry_run=True)
    try:
        return dict(store.entries(network))  # by file name: the owner, cut and hashed when very long
    except OSError as e:
        unreadable.append(_unreadable_state(f"of network {network}", e))
        return None


# --- what the node needs ---

def prerequisites(runner, routes_via_host):
    """What the node needs to run the plugin, tried the way the plugin runs: python3 as its first line finds it,
    ip with -json, nsenter, and nft (a FAIL only when `routes_via_host`)."""
    return [_python3(runner), _ip_json(runner), _program(runner, "nsenter", "util-linux", "the plugin needs it"),
            _program(runner, "nft", "nftables", "routeViaHost needs it" if routes_via_host else None)]


def _probe(runner, argv):
    """`/usr/bin/env PATH=<a runtime's PATH> ARGV`: the program a runtime's plugin would find."""
    try:
        return runner.query([f"PATH={NODE_PATH}", *argv], "/usr/bin/env", ok=ANY_STATUS)
    except CommandFailed as e:  # /usr/bin/env (or chroot) itself is missing, or it hung
        return Completed(127, "", str(e))


def _said(done):
    """The first line a probe printed, or its exit status."""
    text = done.err.strip() or done.out.strip()
    return text.splitlines()[0] if text else f"exit {done.status}"


def _python3(runner):
    done = _probe(runner, PYTHON_STARTED)
    wanted = f"{OLDEST[0]}.{OLDEST[1]}"
    words = done.out.split()
    if done.status == 0 and len(words) == 2:
        executable, version = words
        numbers = tuple(int(n) for n in version.split(".")[:2] if n.isdigit())
        if numbers >= OLDEST:
            return ok("python3", f"{executable} is Python {version} (the plugin's `exec python3` finds it)")
        return Check("python3", FAIL, f"{executable} is Python {version}; route needs Python {wanted} or newer",
                     (f"# install python3 {wanted} or newer where a runtime's PATH finds it first ({NODE_PATH}), "
                      "or keep this node out of the networks that chain route",))
    return Check("python3", FAIL,
                 f"no python3 runs: `/bin/sh -c '{PYTHON_LAUNCH}'` with PATH={NODE_PATH}: {_said(done)}",
                 (f"# install python3 {wanted} or newer; node systems without one (Flatcar, Talos, Bottlerocket) "
                  "cannot run route",))


def _ip_json(runner):
    done = _probe(runner, ["ip", "-json", "link", "show", "dev", "lo"])
    try:
        works = done.status == 0 and isinstance(json.loads(done.out), list)
    except ValueError:
        works = False
    if works:
        return ok("ip -json", _probe(runner, ["ip", "-V"]).out.strip() or "ip -json works")
    if done.status == 127:
        return Check("ip -json", FAIL, f"no ip: {_said(done)}", ("# install iproute2 4.19 or newer",))
    return Check("ip -json", FAIL, f"ip -json does not work (iproute2 older than 4.19?): {_said(done)}",
                 ("# install iproute2 4.19 or newer",))


def _program(runner, name, package, needed_because):
    """A FAIL when the program does not run and `needed_because` says why it must."""
    done = _probe(runner, [name, "--version"])
    if done.status == 0:
        return ok(name, done.out.strip().splitlines()[0] if done.out.strip() else f"{name} runs")
    if not needed_because:
        return ok(name, f"not found ({_said(done)}); only networks with routeViaHost need it")
    return Check(name, FAIL, f"not found: {_said(done)}; {needed_because}", (f"# install {package}",))


# --- the doctor ---

class Doctor:
    def __init__(self, runner, probe=False):
        self.runner = runner
        self.probes_left = PROBE_LIMIT if probe else 0
        self.probe = probe

    def run(self, conf_dirs, conflists, state_dir):
        """[Section]: the node's, then each network's."""
        networks, unreadable = find_networks(conf_dirs, conflists, state_dir)
        via = any(n.via_host_cidrs() for n in networks)
        node = prerequisites(self.runner, via) + [self._kube_proxy(via)] + unreadable
        sections = [Section("node", f"node {socket.gethostname()}", node)]
        for network in networks:
            where = network.conflist or "no conflist here, only records (a Multus attachment?)"
            count = len(network.records)
            title = (f"network {network.name}: {where}; state {network.state_dir or '-'}; "
                     f"{count} attachment{'' if count == 1 else 's'}")
            checks = []
            try:
                self._network(network, checks)
            except CNIError as e:  # the node cannot be read (no ip?): said here, and the prerequisites say why
                checks.append(Check("reading the node", FAIL, str(e), ("# see the node's checks above",)))
            sections.append(Section(f"network {network.name}", title, checks))
        return sections

    # --- a network ---
    def _network(self, network, checks):
        """Append the network's checks to `checks`, as they are made (a failing read keeps those before it)."""
        if network.error:
            checks.append(Check("config", FAIL, network.error, (f"# fix the route entry of {network.conflist}",)))
            return
        pairs = []
        if network.conf:
            checks.append(ok("config", _describe(network.conf)))
            master, shim_name = plugin.locate(network.conf, self.runner)
            if master is None:
                checks.append(Check("master", FAIL, "not set, and the node has no IPv4 default route to take it from",
                                    (f"# set `master` in {network.conflist}",)))
            else:
                pairs.append((master, shim_name))
        for record in network.records.values():
            if record and (record.master, record.shim) not in pairs:
                pairs.append((record.master, record.shim))
        store = Store(network.state_dir, dry_run=True)
        checks += [Check(f"record {owner}", WARN, f"unreadable, or not written by this plugin: "
                         f"{store.attachment_path(network.name, owner)}: {store.why_unreadable(network.name, owner)}",
                         (f"# the runtime's GC removes it; by hand: "
                          f"rm {shlex.quote(store.attachment_path(network.name, owner))}",))
                   for owner, record in network.records.items() if record is None]
        checks += self._forwarding(network)
        for master, shim_name in pairs:
            checks += self._shim_section(network, master, shim_name)

    def _forwarding(self, network):
        families = sorted({iproute.family(cidr) for cidr in network.via_host_cidrs()})
        checks = []
        for family in families:
            key = via_host.FORWARDING[family]
            value = self.runner.sysctl(key)
            if value == "1":
                checks.append(ok(f"IPv{family} forwarding", f"{key} = 1 (routeViaHost needs it)"))
            else:
                checks.append(Check(f"IPv{family} forwarding", FAIL,
                                    f"{key} = {value}: routeViaHost needs it, so ADD fails with code 105 and the "
                                    "pods' traffic through the node is dropped",
                                    (f"sysctl -w {key}=1",
                                     f"# and after a reboot: echo {key.replace('/', '.')}=1 > "
                                     "/etc/sysctl.d/90-cni-route.conf")))
        return checks

    def _shim_section(self, network, master_name, shim_name):
        """The master, the shim and what they need, then every recorded pod address on that shim."""
        pods = [r for r in network.records.values() if r and r.shim == shim_name and r.master == master_name]
        store = Store(network.state_dir, dry_run=True)  # it never writes; old layouts stay
        prefixes = list(dict.fromkeys(p for r in pods for p in r.prefixes))
        seen = self._observe(shim_name, prefixes)
        node = Node.observe(self.runner)
        master, link = node.links.get(master_name), node.links.get(shim_name)
        checks = [self._master(network, master_name, master)]
        if master is not None:
            checks += self._shim(network, master, shim_name, link, pods)
        foreign = master is not None and link is not None and shim.foreign_reason(link, master)
        if master is not None and link is not None and not foreign:
            selectors = next((r.node_addresses for r in pods), None)  # as ADD chose them
            carried = node.shim_addresses(master_name, shim_name, selectors)
            drift = shim.Drift.between(self.runner, master, link, carried)
            v4 = [str(ipaddress.ip_interface(p).ip) for p in prefixes if iproute.family(p) == 4]
            checks += [self._addresses(master, link, drift), self._shim_sysctls(shim_name, drift),
                       self._managers(shim_name),
                       self._rp_filter(master_name, shim_name, [a for a in v4 if seen.paths.get(a) != shim_name]),
                       self._arp_ignore(master_name, shim_name, drift)]
        if any(r.via_host for r in pods):
            checks.append(self._masquerade(shim_name))
        for record in pods:
            checks += [self._pod(store, record, prefix, shim_name, seen, bool(foreign)) for prefix in record.prefixes]
            checks += self._pod_replies(record, node)
        return checks

    def _master(self, network, name, master):
        if master is None:
            fix = (f"# set `master` in {network.conflist} to the node's LAN interface (ip -br link)"
                   if network.conflist else "# the pods recorded on it were attached to a device that is gone",)
            return Check(f"master {name}", FAIL, "does not exist", fix)
        if not master.up:
            return Check(f"master {name}", FAIL, "is down", (_ip(iproute.set_link_up(name)),))
        return ok(f"master {name}", f"up, MTU {master.mtu}, {_cidrs(master) or 'no global address'}")

    def _shim(self, network, master, name, link, pods):
        subject = f"shim {name}"
        if link is None:
            if not pods:
                return [ok(subject, "not there yet: the first ADD creates it")]
            return [Check(subject, FAIL, f"does not exist, and {len(pods)} recorded pod(s) route through it",
                          ("# the next ADD on this node recreates it; now, as ADD would:",
                           _ip(iproute.add_shim(name, master.name, shim.stable_mac(master.permanent_mac, name))),
                           *(f"sysctl -w {key.format(name)}={value}" for key, value in shim.SHIM_SYSCTLS),
                           *(_ip(iproute.add_address(a.cidr, name, a.family == "inet6"))
                             for a in master.addresses if a.scope == "global"),
                           _ip(iproute.set_link_up(name))))]
        reason = shim.foreign_reason(link, master)
        if reason:
            where = f"set `bridge` in {network.conflist}" if network.conflist else "set `bridge` in its config"
            return [Check(subject, FAIL, f"{reason}: not this plugin's shim, so every ADD fails (code 102)",
                          (f"# it is someone else's device: rename or remove it (ip link del {name}, if nothing "
                           f"needs it), or {where} to another name",))]
        found, fix = [f"bridge macvlan on {master.name}"], []
        if link.mtu != master.mtu:
            found.append(f"MTU {link.mtu}, but {master.name} has {master.mtu}")
            fix.append(_ip(iproute.set_link_mtu(name, master.mtu)))
        else:
            found.append(f"MTU {link.mtu}")
        if not link.up:
            found.append("DOWN: the kernel dropped every route through it")
            fix.append(_ip(iproute.set_link_up(name)))
        else:
            found.append("up")
        return [Check(subject, FAIL if fix else OK, ", ".join(found), tuple(fix))]

    def _addresses(self, master, link, drift):
        subject = f"{link.name} addresses"
        if not drift.missing and not drift.extra:
            return ok(subject, f"carries {master.name}'s {_cidrs(master) or '(none)'}")
        found = [f"lacks {master.name}'s {a.cidr}" for a in drift.missing]
        found += [f"has {a.cidr}, which {master.name} no longer has" for a in drift.extra]
        return Check(subject, FAIL, "; ".join(found) + ": pods' ARP and neighbour solicitations for the node are "
                     "answered on the shim only for the addresses it carries",
                     tuple(_ip(iproute.delete_address(a.cidr, link.name)) for a in drift.extra)
                     + tuple(_ip(iproute.add_address(a.cidr, link.name, a.family == "inet6")) for a in drift.missing))

    def _shim_sysctls(self, name, drift):
        subject = f"{name} sysctls"
        if not drift.sysctls:
            return ok(subject, ", ".join(f"{key.format(name).rsplit('/', 1)[1]}={value}"
                                         for key, value in shim.SHIM_SYSCTLS))
        return Check(subject, FAIL, ", ".join(f"{key} is {current}, not {value}" for key, value, current in
                                              drift.sysctls),
                     tuple(f"sysctl -w {key}={value}" for key, value, _ in drift.sysctls))

    def _rp_filter(self, master_name, shim_name, asymmetric):
        """Effective rp_filter is the max of `all` and the interface's; 1 is strict: a packet is dropped unless
        the route back to its source leaves through the interface it came in on."""
        effective, found = self._effective("rp_filter", shim_name)
        found += "; " + self._effective("rp_filter", master_name)[1]
        if effective == 1 and asymmetric:
            return Check("rp_filter", FAIL,
                         f"{found}: strict on {shim_name}, and the node routes {', '.join(asymmetric)} elsewhere, so "
                         f"packets from there arriving on {shim_name} are dropped",
                         ("# make the routes go through the shim again (the pod lines below), or loosen the check "
                          "on the shim only:", f"sysctl -w net/ipv4/conf/{shim_name}/rp_filter=2"))
        if effective == 1:
            found += f": strict on {shim_name}, which passes while every pod's route goes through it (it does)"
        return ok("rp_filter", found)

    def _arp_ignore(self, master_name, shim_name, drift):
        effective, found = self._effective("arp_ignore", shim_name)
        found += "; " + self._effective("arp_ignore", master_name)[1]
        if effective == ARP_IGNORE_NEVER:
            offenders = [iface for iface in ("all", shim_name)
                         if self.runner.sysctl(f"net/ipv4/conf/{iface}/arp_ignore") == str(ARP_IGNORE_NEVER)]
            return Check("arp_ignore", FAIL, f"{found}: {shim_name} answers no ARP, so pods cannot reach the node",
                         tuple(f"sysctl -w net/ipv4/conf/{iface}/arp_ignore=1" for iface in offenders))
        missing = [a.cidr for a in drift.missing if a.family == "inet"]
        if effective and missing:
            return Check("arp_ignore", FAIL, f"{found}: {shim_name} answers ARP only for addresses it carries, and "
                         f"it lacks {', '.join(missing)}", ("# add them: see the addresses line above",))
        if effective:
            found += f": {shim_name} answers for the node's addresses, which it carries"
        return ok("arp_ignore", found)

    def _effective(self, setting, iface):
        """(effective value, text) of an IPv4 conf setting that is the max of `all` and the interface's."""
        every = self.runner.sysctl(f"net/ipv4/conf/all/{setting}")
        own = self.runner.sysctl(f"net/ipv4/conf/{iface}/{setting}")
        effective = max(int(every or 0), int(own or 0))
        return effective, f"{iface} {effective} (all {every}, {iface} {own})"

    def _managers(self, shim_name):
        subject = f"{shim_name} managers"
        if not self.runner.host.in_nodes_network_namespace():
            return ok(subject, "not asked: this is not PID 1's network namespace, the only one NetworkManager and "
                               "systemd-networkd manage")
        found, fix = [], []
        for manager in NETWORK_MANAGERS:
            done = self._tool(manager.query(shim_name), manager.program)
            state = done.status == 0 and manager.state(done.out, shim_name)
            if state and state != "unmanaged":
                found.append(f"{manager.name} manages it ({state}), and {manager.risk}")
                fix += manager.fix(shim_name)
            else:
                found.append(f"{manager.name}: " + _absent_or_idle(done))
        return Check(subject, WARN if fix else OK, "; ".join(found), tuple(fix))

    def _tool(self, args, program):
        """Completed; its status is None when the program did not run (not installed, or it hung)."""
        try:
            return self.runner.query(args, program, ok=ANY_STATUS)
        except CommandFailed as e:
            return Completed(None, "", str(e))

    def _masquerade(self, shim_name):
        subject = f"masquerade {shim_name}"
        try:
            present = via_host.has_masquerade(self.runner, shim_name)
        except CommandFailed as e:
            return Check(subject, FAIL, f"cannot list nft table inet cni_route: {e}", ("# install nftables",))
        if present:
            return ok(subject, f"rules \"{shim_name} ip\" and \"{shim_name} ip6\" in table inet cni_route")
        return Check(subject, FAIL, f"no rule for {shim_name} in nft table inet cni_route: replies to pods' Service "
                     "traffic from LAN backends and other pods do not come back through the node",
                     tuple(_nft(args) for args in (nft.add_table(), nft.add_chain(),
                                                   *(nft.add_set(proto) for proto in nft.PROTOS),
                                                   *(nft.add_masquerade(shim_name, proto) for proto in nft.PROTOS))))

    def _kube_proxy(self, via):
        found, unread = [], "legacy iptables not read"
        try:
            if any("ifname" in obj for obj in self.runner.read([iproute.show_link("kube-ipvs0")])):
                found.append("ipvs (device kube-ipvs0; it sets arp_ignore=1, see each shim's arp_ignore)")
        except CommandFailed as e:  # no ip: the prerequisites say so
            unread = f"links not read: {e}; {unread}"
        try:
            tables = nft.tables(self.runner.query(nft.list_tables(), "nft").out)
            if any(name == "kube-proxy" for _, name in tables):
                found.append("nftables (table kube-proxy)")
            if ("ip", "nat") in tables and self.runner.query(nft.list_chain("ip", "nat", "KUBE-SERVICES"), "nft",
                                                             ok=ANY_STATUS).status == 0:
                found.append("iptables (chain KUBE-SERVICES in table ip nat)")
        except CommandFailed as e:
            unread = f"nftables not read: {e}"
        if found:
            return ok("kube-proxy", "mode " + found[0] + "".join(f"; also {more}" for more in found[1:]))
        where = f"no device kube-ipvs0, no nft table kube-proxy, no chain KUBE-SERVICES in table ip nat ({unread})"
        if via:
            return Check("kube-proxy", WARN, f"none found: {where}; routeViaHost sends pods' Service traffic to "
                         "this node, where something must translate it",
                         ("# does kube-proxy (or another Service proxy) run on this node?",))
        return ok("kube-proxy", f"none found: {where}; only routeViaHost depends on it")

    # --- pods ---
    def _observe(self, shim_name, prefixes):
        """Per pod address: the routes to its prefix, the device the kernel sends it through, its neighbour
        state; batched reads."""
        addresses = routes.addresses(prefixes)
        paths, neighbours = {}, {}
        for ipv6 in (False, True):
            mine = [a for a in addresses if (iproute.family(a) == 6) == ipv6]
            for route in self.runner.read([iproute.get_route(a) for a in mine], ipv6=ipv6):
                paths[route.get("dst")] = route.get("dev")
        for entry in routes.neighbours(self.runner, prefixes):
            if entry.get("dev") == shim_name:
                neighbours[entry.get("dst")] = entry.get("state") or []
        return Observed(routes.observe(self.runner, prefixes), paths, neighbours)

    def _pod(self, store, record, prefix, shim_name, seen, foreign_shim):
        address = str(ipaddress.ip_interface(prefix).ip)
        subject = f"pod {address}"
        owner = store.owner_of(prefix)
        if owner not in (None, record.claimant):
            return Check(subject, WARN, f"{record.owner}'s record, but the address now belongs to {owner} (IPAM "
                         "gave it to a new pod before this one's DEL)",
                         ("# nothing to do: that DEL, or the runtime's GC, removes this record and leaves the "
                          "route alone",))
        found, fix, verdicts = [record.owner], [], []
        on_shim = [r for r in seen.routes.get(prefix, []) if r.get("dev") == shim_name]
        elsewhere = sorted({r.get("dev", "?") for r in seen.routes.get(prefix, [])} - {shim_name})
        if not on_shim or (iproute.family(prefix) == 4 and not any(r.get("scope") == "link" for r in on_shim)):
            found.append(f"no route {prefix} dev {shim_name} scope link" if not on_shim else
                         f"the route on {shim_name} is not scope link")
            if elsewhere:
                found.append(f"a route to it via {', '.join(elsewhere)}")
            verdicts.append(FAIL)
            first = f"# once {shim_name} is this plugin's shim again (above), if" if foreign_shim else "# if"
            fix += [f"{first} the pod still runs (if it is gone, its DEL or the runtime's GC removes this record):",
                    _ip(iproute.replace_route(prefix, shim_name))]
        else:
            found.append(f"route on {shim_name}")
        path = seen.paths.get(address)
        if path != shim_name:
            found.append(f"the node sends to it via {path}" if path else "the node has no route to it")
            if on_shim:  # the main table is right, yet something else wins
                verdicts.append(FAIL)
                fix += [f"# a rule or another table sends {address} elsewhere: see ip route get {address}; ip rule"]
        state = seen.neighbours.get(address)
        if state:
            found.append(f"neighbour {'/'.join(state)}")
            if "FAILED" in state:
                verdicts.append(FAIL)
                fix.append(f"# the pod does not answer ARP/ND on {shim_name}: does it still run, with this address? "
                           f"(ip neigh del {address} dev {shim_name} forgets the failure)")
        if self.probe:
            found.append(self._ping(address, verdicts, fix))
        return Check(subject, worst(verdicts), ", ".join(found), tuple(fix))

    def _pod_replies(self, record, node):
        """Whether a pod of several interfaces answers every node address out of the interface the node reaches
        it by: for each of its interfaces' addresses, the pod's route from there to each node address (rules and
        tables included). Read in the namespace the ADD recorded, once it is known to still hold this pod (the
        record's interface with its addresses): a namespace path can be reused."""
        subject = f"pod {record.owner} reply paths"
        if not record.netns:
            return []  # a record of an older version: where the pod is, nobody told us
        if not self.runner.host.is_network_namespace(record.netns) or not self.runner.has_program("nsenter"):
            return [ok(subject, f"not read: {record.netns} is no network namespace now (or nsenter is missing)")]
        links = {obj["ifname"]: obj for obj in self.runner.read([iproute.show_addresses()], netns=record.netns)}
        held = {a["local"] for a in links.get(record.ifname, {}).get("addr_info", ())}
        if not set(routes.addresses(record.prefixes)) <= held:
            return [ok(subject, f"not read: {record.netns} holds no {record.ifname} with {record.prefixes}")]
        sources = {a["local"]: name for name, obj in links.items() if name != "lo"
                   for a in obj.get("addr_info", ()) if a.get("scope") == "global"}
        if len(set(sources.values())) < 2:
            return []  # one interface: every reply leaves by it
        targets = list(dict.fromkeys(a.local for link in node.links.values() if link.name != record.shim
                                     for a in link.global_addresses))
        asymmetric = []
        for ipv6 in (False, True):
            pairs = [(t, s) for s in sources for t in targets if (":" in s) == (":" in t) == ipv6]
            for way in self.runner.read([iproute.get_route_from(t, s) for t, s in pairs], ipv6, record.netns):
                if way.get("dev") != sources.get(way.get("from")):
                    asymmetric.append(f"to {way.get('dst')} from {way.get('from')} ({sources.get(way.get('from'))})"
                                      f" out of {way.get('dev')}")
        if not asymmetric:
            return [ok(subject, f"{', '.join(sorted(set(sources.values())))} answer the node's "
                                f"{len(targets)} address(es) out of themselves")]
        return [Check(subject, FAIL, "the pod answers " + "; ".join(asymmetric) + ": the node drops (rp_filter) "
                      "or never gets those replies, so connections to that address fail",
                      (f"# its interfaces at {record.ifname}'s ADD got reply paths (docs/multus.md); one that came "
                       "later, or a pod attached by an older version, has none: re-create the pod, or run its "
                       f"CHECK, which names what is missing (ip -n ... rule; ip route show table all)",))]

    def _ping(self, address, verdicts, fix):
        if self.probes_left == 0:
            return f"not pinged (--probe pings at most {PROBE_LIMIT})"
        self.probes_left -= 1
        try:
            done = self.runner.query(["-c", "1", "-W", str(PROBE_WAIT), "-n", "-q", address], "ping", ok=ANY_STATUS)
        except CommandFailed as e:
            verdicts.append(WARN)
            return f"not pinged: {e}"
        if done.status == 0:
            return "answers ping"
        verdicts.append(FAIL)
        fix.append("# it does not answer: is the pod running, with this address? see the checks above")
        return f"no answer to one ping in {PROBE_WAIT} s"



def nm_state(output, name):
    """The state NetworkManager gives device `name` in `nmcli -t -f DEVICE,STATE device status`, or None."""
    for line in output.splitlines():
        device, _, state = line.replace("\\:", "\0").partition(":")
        if device.replace("\0", ":") == name:
            return state.strip()
    return None


def networkd_state(output, name):
    """The SETUP column systemd-networkd gives link `name` in `networkctl list --no-legend`, or None."""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 5 and words[1] == name:
            return words[-1]
    return None


class NetworkManager(namedtuple("NetworkManager", "name program query state risk fix")):
    """A network manager that may claim the shim: its tool, the tool's arguments for a shim (`query`), the
    parser of its answer into the shim's state (`state`), what it may do to a shim it manages, and the
    commands that make it leave the shim alone (`fix`)."""

    __slots__ = ()


NETWORK_MANAGERS = (
    NetworkManager(
        "NetworkManager", "nmcli", lambda shim: ["-t", "-f", "DEVICE,STATE", "device", "status"], nm_state,
        "may take it down or strip its addresses",
        lambda shim: ["# tell NetworkManager to leave it alone (merge with an unmanaged-devices= line you have):",
                      f"printf '[keyfile]\\nunmanaged-devices=interface-name:%s\\n' {shlex.quote(shim)} > "
                      f"/etc/NetworkManager/conf.d/90-cni-route-{shim}.conf",
                      "nmcli general reload conf"]),
    NetworkManager(
        "systemd-networkd", "networkctl", lambda shim: ["list", "--no-legend", "--no-pager", shim], networkd_state,
        "may reconfigure it",
        lambda shim: ["# tell systemd-networkd to leave it alone:",
                      f"printf '[Match]\\nName=%s\\n\\n[Link]\\nUnmanaged=yes\\n' {shlex.quote(shim)} > "
                      f"/etc/systemd/network/00-cni-route-{shim}.network",
                      "networkctl reload"]),
)


def _describe(conf):
    words = [f"master {conf.master or '(the default route device)'}", f"bridge {conf.bridge or '(derived)'}"]
    if conf.route_via_host:
        words.append(f"routeViaHost {' '.join(conf.route_via_host)}")
    words.append(f"log {conf.log_file}" if conf.log_file else "log to the runtime's (stderr)")
    return ", ".join(words)


def _absent_or_idle(done):
    """What a network manager's tool said when it did not claim the shim."""
    if done.status is None:
        return done.err  # e.g. "nmcli not found on PATH"
    return f"not running ({_said(done)})" if done.status else "leaves it alone"


def _ip(args):
    return shlex.join(["ip", *args])


def _nft(args):
    return shlex.join(["nft", *args])


def _cidrs(link):
    """The link's global addresses, in ip's order (the primary first)."""
    return " ".join(a.cidr for a in link.addresses if a.scope == "global")


# --- the report ---

def failed(sections):
    return any(c.verdict == FAIL for s in sections for c in s.checks)


def counts(sections):
    every = [c.verdict for s in sections for c in s.checks]
    return {verdict: every.count(verdict) for verdict in reversed(GRAVITY)}


def render_text(sections, stamp):
    width = min(28, max((len(c.subject) for s in sections for c in s.checks), default=0))
    lines = [f"route doctor {__version__}, {stamp}"]
    for section in sections:
        lines += ["", section.title]
        for check in section.checks:
            lines.append(f"  {check.verdict:<4}  {check.subject:<{width}}  {check.found}")
            lines += [" " * (width + 10) + ("fix: " if i == 0 else "     ") + line for i, line in enumerate(check.fix)]
            if check.verdict != OK:
                lines.append(" " * (width + 10) + "see: " + docs_page(check.subject))
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts(sections).items())
    lines += ["", summary + (": exit 1" if failed(sections) else ": nothing fails")]
    return "\n".join(lines) + "\n"


def render_json(sections, stamp):
    return json.dumps({
        "route": __version__, "time": stamp, "node": socket.gethostname(),
        "verdict": FAIL if failed(sections) else worst(c.verdict for s in sections for c in s.checks),
        "counts": counts(sections),
        "sections": [{"scope": s.scope, "title": s.title} for s in sections],
        "checks": [c.to_json(s.scope) for s in sections for c in s.checks],
    }, indent=2) + "\n"


DESCRIPTION = """\
Say what is wrong on this node for the route plugin, and what fixes it, without changing anything: for the
operator whose pods cannot reach their node, or who wants to know before they cannot. It checks what the plugin
needs to run (python3, ip, nsenter, nft), then every network whose config chains route (the conf dirs and
--conflist files) and every network recorded under a state dir (a Multus attachment has no conflist on the node):
the master and the shim, the shim's addresses and sysctls, network managers that would manage the shim,
rp_filter and arp_ignore, forwarding and the masquerade rule for routeViaHost, and for each recorded pod address
its route, the path the kernel takes and its neighbour entry (with --probe, one ping).

Each check is OK, WARN or FAIL, with what was found and, unless OK, the commands that fix it, exactly as they
would be run. Exit 0 when nothing FAILs, 1 otherwise; --json prints one document, for monitoring."""


def add_parser(sub):
    p = sub.add_parser("doctor", help="what is wrong on this node for route, and what fixes it (changes nothing)",
                       description=DESCRIPTION)
    p.add_argument("--conf-dir", action="append", default=[], metavar="DIR",
                   help=f"a CNI config dir to read (default: {DEFAULT_CONF_DIR}, unless --conflist is given)")
    p.add_argument("--conflist", action="append", default=[], metavar="FILE", help="a conflist to read")
    p.add_argument("--state-dir", default=config.DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"where to look for the records of networks without a conflist here (default "
                        f"{config.DEFAULT_STATE_DIR}); a config's own stateDir is read too")
    p.add_argument("--json", action="store_true", help="print one JSON document, for monitoring")
    p.add_argument("--probe", action="store_true",
                   help=f"also ping each recorded pod address once (at most {PROBE_LIMIT}, {PROBE_WAIT} s each)")
    p.set_defaults(handler=handle)


def handle(args, host=None):
    # Its Journal is never written (doctor leaves no log block), and a dry run runs no change even by mistake.
    runner = Runner(Journal(), dry_run=True, host=host)
    conf_dirs = args.conf_dir or ([] if args.conflist else [DEFAULT_CONF_DIR])
    sections = Doctor(runner, args.probe).run(conf_dirs, args.conflist, args.state_dir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print((render_json if args.json else render_text)(sections, stamp), end="")
    return 1 if failed(sections) else 0
