"""The shim: a bridge-mode macvlan on the master, through which the node reaches its macvlan pods.

The kernel does not pass frames between a macvlan's master and its children, but bridge-mode siblings on
the same master reach each other; the shim is such a sibling in the node's namespace. It carries copies of
the master's addresses, so that pods' ARP and neighbour solicitations for the node are answered on it even
with arp_ignore set, and IPv6 works at all (see README, "Dual stack and hardened nodes").
"""
from collections import namedtuple

from . import iproute
from .errors import DeviceMissing, ShimConflict

# Sysctls of the shim itself: (key with '/' separators, value, why).
SHIM_SYSCTLS = (
    # Answer ARP on the shim only for senders routed through it (the pods): the LAN keeps seeing the
    # master's MAC for the node's address, instead of whichever of master and shim answered first.
    ("net/ipv4/conf/{}/arp_filter", "1"),
    # The LAN's router advertisements must not give the shim addresses of its own or a default route.
    ("net/ipv6/conf/{}/accept_ra", "0"),
    # When the master's primary IPv4 address goes away, removing its copy must not take the copies of the
    # master's other addresses in that subnet with it (which the kernel does to secondaries by default).
    ("net/ipv4/conf/{}/promote_secondaries", "1"),
)
# Sysctls the shim takes from the master. A new device gets net.ipv6.conf.default's disable_ipv6: a node that
# sets it to 1 would leave the shim unable to carry the master's IPv6 addresses (and IPv6 pods' routes).
MASTER_SYSCTLS = ("net/ipv6/conf/{}/disable_ipv6",)


class Address(namedtuple("Address", "family local prefixlen scope")):
    """One address of a link: family "inet"/"inet6", scope "global"/"link"/..."""

    __slots__ = ()

    @property
    def cidr(self):
        return f"{self.local}/{self.prefixlen}"


class Link(namedtuple("Link", "name kind mode parent up mtu addresses")):
    """What `ip -json -d addr show` says of a link: kind is linkinfo's info_kind ("macvlan", "veth"; None
    for plain devices), mode the macvlan mode, parent the lower device, up the administrative state."""

    __slots__ = ()

    @classmethod
    def from_json(cls, obj):
        info = obj.get("linkinfo") or {}
        return cls(
            name=obj["ifname"], kind=info.get("info_kind"), mode=(info.get("info_data") or {}).get("mode"),
            parent=obj.get("link"), up="UP" in obj.get("flags", ()), mtu=obj.get("mtu", 0),
            addresses=tuple(Address(a["family"], a["local"], a["prefixlen"], a.get("scope", "global"))
                            for a in obj.get("addr_info", ()) if "local" in a))  # as ip lists them: primary first

    @property
    def global_addresses(self):
        """What the node is reached at; link-local addresses are per link and never copied."""
        return {a for a in self.addresses if a.scope == "global"}


def observe(runner, names):
    """The named links that exist, by name, from one batched `ip -json -d addr show`."""
    return {obj["ifname"]: Link.from_json(obj)
            for obj in runner.read([iproute.show_link(n) for n in names]) if "ifname" in obj}


def foreign_reason(shim, master):
    """Why an existing device cannot serve as our shim on the `master` link, or None if it can."""
    if shim.kind != "macvlan":
        return f"it is a {shim.kind or 'plain'} device, not a macvlan"
    if shim.mode != "bridge":
        return f"it is a macvlan in {shim.mode} mode, not bridge"
    if shim.parent != lower_device(master):
        return f"it is a macvlan on {shim.parent}, not on {lower_device(master)}"
    return None


def lower_device(master):
    """The device a macvlan made on `master` hangs off: a macvlan made on a macvlan goes on that one's own
    lower device (the kernel's rule), and ip then names that one as its link."""
    return master.parent if master.kind == "macvlan" and master.parent else master.name


def ensure(runner, master_name, shim_name):
    """Make the shim exist with the master's MTU and addresses and our sysctls, and be up; return the master
    and whether the shim was missing or down (the kernel had dropped its routes).

    A device that only has the shim's name is refused and left untouched. Everything is compared with the
    current state first, so a second ADD changes nothing, and a shim left half-configured gets completed.
    """
    links = observe(runner, [master_name, shim_name])
    master = links.get(master_name)
    if master is None:
        raise DeviceMissing(f"master {master_name} does not exist", "set `master` to the macvlan master device")
    shim = links.get(shim_name)
    if shim is None:
        runner.change(iproute.add_shim(shim_name, master_name))  # a new macvlan takes the master's MTU
        shim = Link(shim_name, "macvlan", "bridge", master_name, False, master.mtu, ())
    else:
        reason = foreign_reason(shim, master)
        if reason:
            raise ShimConflict(f"device {shim_name} exists but is not this plugin's shim: {reason}",
                               "rename or remove it, or set `bridge` to another name")
    drift = Drift.between(runner, master, shim)
    if drift.mtu:
        runner.change(iproute.set_link_mtu(shim_name, drift.mtu))
    for key, value, _ in drift.sysctls:  # before the shim is up, so no advertisement slips in between
        runner.set_sysctl(key, value)
    for address in drift.extra:  # the master no longer has it
        runner.change(iproute.delete_address(address.cidr, shim_name))
    for address in drift.missing:
        runner.change(iproute.add_address(address.cidr, shim_name, ipv6=address.family == "inet6"))
    if not shim.up:
        runner.change(iproute.set_link_up(shim_name))
    return master, not shim.up


def problems(runner, links, master_name, shim_name):
    """What CHECK finds wrong with the shim (given `observe`'s links), as sentences; empty when healthy."""
    master, shim = links.get(master_name), links.get(shim_name)
    if master is None:
        return [f"master {master_name} does not exist"]
    if shim is None:
        return [f"shim {shim_name} does not exist"]
    reason = foreign_reason(shim, master)
    if reason:
        return [f"shim {shim_name} is wrong: {reason}"]
    drift = Drift.between(runner, master, shim)
    found = [f"shim {shim_name} is down"] if not shim.up else []
    if drift.mtu:
        found.append(f"shim {shim_name} has MTU {shim.mtu}, master {master.mtu}")
    found += [f"shim {shim_name} lacks the node address {a.cidr}" for a in drift.missing]
    found += [f"shim {shim_name} has {a.cidr}, which {master_name} no longer has" for a in drift.extra]
    found += [f"sysctl {key} is {current}, not {value}" for key, value, current in drift.sysctls]
    return found


class Drift(namedtuple("Drift", "mtu sysctls extra missing")):
    """How an existing shim differs from what it should be: the MTU it should have (None if right), the
    sysctls [(key, wanted, current)] to set, and its global addresses to remove and to add."""

    __slots__ = ()

    @classmethod
    def between(cls, runner, master, shim):
        sysctls = []
        for key, value in SHIM_SYSCTLS:
            key = key.format(shim.name)
            current = runner.sysctl(key)
            if current is not None and current != value:  # None: that family is disabled on the node
                sysctls.append((key, value, current))
        for key in MASTER_SYSCTLS:
            value, current = runner.sysctl(key.format(master.name)), runner.sysctl(key.format(shim.name))
            if None not in (value, current) and current != value:
                sysctls.append((key.format(shim.name), value, current))
        wanted, present = master.global_addresses, shim.global_addresses
        return cls(master.mtu if shim.mtu != master.mtu else None, sysctls,
                   sorted(present - wanted, key=_order), sorted(wanted - present, key=_order))


def _order(address):
    return (address.family, address.local, address.prefixlen)
