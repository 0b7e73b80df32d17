"""doctor's checks of the node and of each network: the prerequisites and kube-proxy, then per network its
config, records and forwarding, and per (master, shim) the master, the shim, its addresses, sysctls and managers,
rp_filter and arp_ignore, the masquerade rule, and the recorded pods (pods.py)."""
import ipaddress
import shlex
import socket

from .. import iproute, nft, plugin, shim, via_host
from ..errors import CNIError, CommandFailed
from ..node import Node
from ..runner import ANY_STATUS
from ..store import Store
from .discovery import find_networks
from .managers import check as check_managers
from .pods import PodChecks
from .prerequisites import nft_versions, prerequisites
from .verdicts import FAIL, OK, WARN, Check, Docs, Section, ip_command, nft_command, ok

ARP_IGNORE_NEVER = 8  # "do not reply for all local addresses"; 0-3 answer for the shim's own addresses, 4-7 all


class Doctor:
    """Runs every check of a node through `runner`, which only reads (doctor changes nothing)."""

    def __init__(self, runner, probe=False, node_programs=None):
        """`node_programs`: a runner of the node's own programs (chrooted into the node's / as a container mounts
        it), when they are not this process's: they are checked instead, and compared with this nft."""
        self.runner = runner
        self.node_programs = node_programs
        self.pods = PodChecks(runner, probe)

    def run(self, conf_dirs, conflists, state_dir):
        """[Section]: the node's, then each network's."""
        networks, unreadable = find_networks(conf_dirs, conflists, state_dir)
        via = any(n.via_host_cidrs() for n in networks)
        node = prerequisites(self.node_programs or self.runner, via)
        if self.node_programs:
            node.append(nft_versions(self.runner, self.node_programs))
        node += [self._kube_proxy(via)] + unreadable
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
                checks.append(Check("reading the node", FAIL, str(e), ("# see the node's checks above",),
                                    Docs.PROGRAMS))
            sections.append(Section(f"network {network.name}", title, checks))
        return sections

    # --- a network ---
    def _network(self, network, checks):
        """Append the network's checks to `checks`, as they are made (a failing read keeps those before it)."""
        if network.error:
            checks.append(Check("config", FAIL, network.error, (f"# fix the route entry of {network.conflist}",),
                                Docs.CONFIGS))
            return
        pairs = []
        if network.conf:
            checks.append(ok("config", _describe(network.conf), Docs.CONFIGS))
            master, shim_name = plugin.locate(network.conf, self.runner)
            if master is None:
                checks.append(Check("master", FAIL, "not set, and the node has no IPv4 default route to take it from",
                                    (f"# set `master` in {network.conflist}",), Docs.CONFIGS))
            else:
                pairs.append((master, shim_name))
        for record in network.records.values():
            if record and (record.master, record.shim) not in pairs:
                pairs.append((record.master, record.shim))
        store = Store(network.state_dir, dry_run=True)
        checks += [Check(f"record {owner}", WARN, f"unreadable, or not written by this plugin: "
                         f"{store.attachment_path(network.name, owner)}: {store.why_unreadable(network.name, owner)}",
                         (f"# the runtime's GC removes it; by hand: "
                          f"rm {shlex.quote(store.attachment_path(network.name, owner))}",),
                         Docs.CONFIGS)
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
                checks.append(ok(f"IPv{family} forwarding", f"{key} = 1 (routeViaHost needs it)",
                                 Docs.FORWARDING_MASQUERADE))
            else:
                checks.append(Check(f"IPv{family} forwarding", FAIL,
                                    f"{key} = {value}: routeViaHost needs it, so ADD fails with code 105 and the "
                                    "pods' traffic through the node is dropped",
                                    (f"sysctl -w {key}=1",
                                     f"# and after a reboot: echo {key.replace('/', '.')}=1 > "
                                     "/etc/sysctl.d/90-cni-route.conf"), Docs.FORWARDING_MASQUERADE))
        return checks

    def _shim_section(self, network, master_name, shim_name):
        """The master, the shim and what they need, then every recorded pod address on that shim."""
        pods = [r for r in network.records.values() if r and r.shim == shim_name and r.master == master_name]
        store = Store(network.state_dir, dry_run=True)  # it never writes; old layouts stay
        prefixes = list(dict.fromkeys(p for r in pods for p in r.prefixes))
        seen = self.pods.observe(shim_name, prefixes)
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
                       check_managers(self.runner, shim_name),
                       self._rp_filter(master_name, shim_name, [a for a in v4 if seen.paths.get(a) != shim_name]),
                       self._arp_ignore(master_name, shim_name, drift)]
        if any(r.via_host for r in pods):
            checks.append(self._masquerade(shim_name))
        for record in pods:
            checks += [self.pods.address(store, record, prefix, shim_name, seen, bool(foreign))
                       for prefix in record.prefixes]
            checks += self.pods.reply_paths(record, node)
        return checks

    def _master(self, network, name, master):
        if master is None:
            fix = (f"# set `master` in {network.conflist} to the node's LAN interface (ip -br link)"
                   if network.conflist else "# the pods recorded on it were attached to a device that is gone",)
            return Check(f"master {name}", FAIL, "does not exist", fix, Docs.MASTER)
        if not master.up:
            return Check(f"master {name}", FAIL, "is down", (ip_command(iproute.set_link_up(name)),), Docs.MASTER)
        return ok(f"master {name}", f"up, MTU {master.mtu}, {_cidrs(master) or 'no global address'}", Docs.MASTER)

    def _shim(self, network, master, name, link, pods):
        subject = f"shim {name}"
        if link is None:
            if not pods:
                return [ok(subject, "not there yet: the first ADD creates it", Docs.SHIM)]
            return [Check(subject, FAIL, f"does not exist, and {len(pods)} recorded pod(s) route through it",
                          ("# the next ADD on this node recreates it; now, as ADD would:",
                           ip_command(iproute.add_shim(name, master.name, shim.stable_mac(master.permanent_mac, name))),
                           *(f"sysctl -w {key.format(name)}={value}" for key, value in shim.SHIM_SYSCTLS),
                           *(ip_command(iproute.add_address(a.cidr, name, a.family == "inet6"))
                             for a in master.addresses if a.scope == "global"),
                           ip_command(iproute.set_link_up(name))), Docs.SHIM)]
        reason = shim.foreign_reason(link, master)
        if reason:
            where = f"set `bridge` in {network.conflist}" if network.conflist else "set `bridge` in its config"
            return [Check(subject, FAIL, f"{reason}: not this plugin's shim, so every ADD fails (code 102)",
                          (f"# it is someone else's device: rename or remove it (ip link del {name}, if nothing "
                           f"needs it), or {where} to another name",), Docs.SHIM)]
        found, fix = [f"bridge macvlan on {master.name}"], []
        if link.mtu != master.mtu:
            found.append(f"MTU {link.mtu}, but {master.name} has {master.mtu}")
            fix.append(ip_command(iproute.set_link_mtu(name, master.mtu)))
        else:
            found.append(f"MTU {link.mtu}")
        if not link.up:
            found.append("DOWN: the kernel dropped every route through it")
            fix.append(ip_command(iproute.set_link_up(name)))
        else:
            found.append("up")
        return [Check(subject, FAIL if fix else OK, ", ".join(found), tuple(fix), Docs.SHIM)]

    def _addresses(self, master, link, drift):
        subject = f"{link.name} addresses"
        if not drift.missing and not drift.extra:
            return ok(subject, f"carries {master.name}'s {_cidrs(master) or '(none)'}", Docs.ADDRESSES)
        found = [f"lacks {master.name}'s {a.cidr}" for a in drift.missing]
        found += [f"has {a.cidr}, which {master.name} no longer has" for a in drift.extra]
        return Check(subject, FAIL, "; ".join(found) + ": pods' ARP and neighbour solicitations for the node are "
                     "answered on the shim only for the addresses it carries",
                     tuple(ip_command(iproute.delete_address(a.cidr, link.name)) for a in drift.extra)
                     + tuple(ip_command(iproute.add_address(a.cidr, link.name, a.family == "inet6"))
                           for a in drift.missing), Docs.ADDRESSES)

    def _shim_sysctls(self, name, drift):
        subject = f"{name} sysctls"
        if not drift.sysctls:
            return ok(subject, ", ".join(f"{key.format(name).rsplit('/', 1)[1]}={value}"
                                         for key, value in shim.SHIM_SYSCTLS), Docs.SYSCTLS)
        return Check(subject, FAIL, ", ".join(f"{key} is {current}, not {value}" for key, value, current in
                                              drift.sysctls),
                     tuple(f"sysctl -w {key}={value}" for key, value, _ in drift.sysctls), Docs.SYSCTLS)

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
                          "on the shim only:", f"sysctl -w net/ipv4/conf/{shim_name}/rp_filter=2"),
                         Docs.RP_FILTER_ARP_IGNORE)
        if effective == 1:
            found += f": strict on {shim_name}, which passes while every pod's route goes through it (it does)"
        return ok("rp_filter", found, Docs.RP_FILTER_ARP_IGNORE)

    def _arp_ignore(self, master_name, shim_name, drift):
        effective, found = self._effective("arp_ignore", shim_name)
        found += "; " + self._effective("arp_ignore", master_name)[1]
        if effective == ARP_IGNORE_NEVER:
            offenders = [iface for iface in ("all", shim_name)
                         if self.runner.sysctl(f"net/ipv4/conf/{iface}/arp_ignore") == str(ARP_IGNORE_NEVER)]
            return Check("arp_ignore", FAIL, f"{found}: {shim_name} answers no ARP, so pods cannot reach the node",
                         tuple(f"sysctl -w net/ipv4/conf/{iface}/arp_ignore=1" for iface in offenders),
                         Docs.RP_FILTER_ARP_IGNORE)
        missing = [a.cidr for a in drift.missing if a.family == "inet"]
        if effective and missing:
            return Check("arp_ignore", FAIL, f"{found}: {shim_name} answers ARP only for addresses it carries, and "
                         f"it lacks {', '.join(missing)}", ("# add them: see the addresses line above",),
                         Docs.RP_FILTER_ARP_IGNORE)
        if effective:
            found += f": {shim_name} answers for the node's addresses, which it carries"
        return ok("arp_ignore", found, Docs.RP_FILTER_ARP_IGNORE)

    def _effective(self, setting, iface):
        """(effective value, text) of an IPv4 conf setting that is the max of `all` and the interface's."""
        every = self.runner.sysctl(f"net/ipv4/conf/all/{setting}")
        own = self.runner.sysctl(f"net/ipv4/conf/{iface}/{setting}")
        effective = max(int(every or 0), int(own or 0))
        return effective, f"{iface} {effective} (all {every}, {iface} {own})"

    def _masquerade(self, shim_name):
        subject = f"masquerade {shim_name}"
        try:
            present = via_host.has_masquerade(self.runner, shim_name)
        except CommandFailed as e:
            return Check(subject, FAIL, f"cannot list nft table inet cni_route: {e}", ("# install nftables",),
                         Docs.FORWARDING_MASQUERADE)
        if present:
            return ok(subject, f"rules \"{shim_name} ip\" and \"{shim_name} ip6\" in table inet cni_route",
                      Docs.FORWARDING_MASQUERADE)
        return Check(subject, FAIL, f"no rule for {shim_name} in nft table inet cni_route: replies to pods' Service "
                     "traffic from LAN backends and other pods do not come back through the node",
                     tuple(nft_command(args) for args in (nft.add_table(), nft.add_chain(),
                                                          *(nft.add_set(proto) for proto in nft.PROTOS),
                                                          *(nft.add_masquerade(shim_name, proto)
                                                            for proto in nft.PROTOS))), Docs.FORWARDING_MASQUERADE)

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
            return ok("kube-proxy", "mode " + found[0] + "".join(f"; also {more}" for more in found[1:]),
                      Docs.KUBE_PROXY)
        where = f"no device kube-ipvs0, no nft table kube-proxy, no chain KUBE-SERVICES in table ip nat ({unread})"
        if via:
            return Check("kube-proxy", WARN, f"none found: {where}; routeViaHost sends pods' Service traffic to "
                         "this node, where something must translate it",
                         ("# does kube-proxy (or another Service proxy) run on this node?",), Docs.KUBE_PROXY)
        return ok("kube-proxy", f"none found: {where}; only routeViaHost depends on it", Docs.KUBE_PROXY)


def _describe(conf):
    words = [f"master {conf.master or '(the default route device)'}", f"bridge {conf.bridge or '(derived)'}"]
    if conf.route_via_host:
        words.append(f"routeViaHost {' '.join(conf.route_via_host)}")
    words.append(f"log {conf.log_file}" if conf.log_file else "log to the runtime's (stderr)")
    return ", ".join(words)


def _cidrs(link):
    """The link's global addresses, in ip's order (the primary first)."""
    return " ".join(a.cidr for a in link.addresses if a.scope == "global")
