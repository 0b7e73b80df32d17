"""The shim: a bridge-mode macvlan on the master, through which the node reaches its macvlan pods.

The kernel does not pass frames between a macvlan's master and its children, but bridge-mode siblings on
the same master reach each other; the shim is such a sibling in the node's namespace. It carries copies of
the node's addresses (the master's, or those the node has elsewhere: node.Node.shim_addresses), so that pods'
ARP and neighbour solicitations for the node are answered on it even with arp_ignore set, and IPv6 works at
all (see docs/how-it-works.md and docs/node-layouts.md).

The shim's MAC is derived from the master's permanent MAC and the shim's name (`stable_mac`), so a shim that
is deleted and made again (a networkd restart, `route reconcile`) has the MAC the pods have cached for the
node: they keep reaching it without waiting for their neighbour entries to expire.
"""
from collections import namedtuple

from . import iproute
from .errors import DeviceMissing, HostNotReady, ShimConflict
from .node import Link

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


def stable_mac(master_mac, shim_name):
    """A locally administered unicast MAC that is the same whenever this shim is made on this master: derived
    from what does not change, the master's permanent MAC and the shim's name. None (the kernel picks one)
    for a master without a MAC."""
    if not master_mac:
        return None
    import hashlib  # only when a shim is made: it loads OpenSSL

    digest = bytearray(hashlib.sha256(f"{master_mac.lower()}/{shim_name}".encode()).digest()[:6])
    digest[0] = digest[0] & 0xFC | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in digest)


def foreign_reason(shim, master):
    """Why an existing device cannot serve as our shim on the `master` link, or None if it can."""
    if shim.kind != "macvlan":
        return f"it is a {shim.kind or 'plain'} device, not a macvlan"
    if shim.mode != "bridge":
        return f"it is a macvlan in {shim.mode} mode, not bridge"
    if shim.parent != lower_device(master):
        return f"it is a macvlan on {shim.parent}, not on {lower_device(master)}"
    return None


def require_master(node, master_name):
    """The master's Link, if it can take the shim: it exists and has no ipvlan children."""
    master = node.links.get(master_name)
    if master is None:
        raise DeviceMissing(f"master {master_name} does not exist", "set `master` to the macvlan master device")
    reason = master_conflict(node, master_name)
    if reason:
        raise HostNotReady(reason, "give this network another master, or move the ipvlan devices off it")
    return master


def master_conflict(node, master_name):
    """Why the master cannot take a macvlan child although it exists, or None."""
    children = node.ipvlan_children(master_name)
    if children:
        return (f"master {master_name} has ipvlan children ({', '.join(children)}): macvlan and ipvlan cannot "
                "share a master (the kernel answers \"Device or resource busy\")")
    return None


def lower_device(master):
    """The device a macvlan made on `master` hangs off: a macvlan made on a macvlan goes on that one's own
    lower device (the kernel's rule), and ip then names that one as its link."""
    return master.parent if master.kind == "macvlan" and master.parent else master.name


def ensure(runner, node, master_name, shim_name, addresses):
    """Make the shim exist with the master's MTU, exactly `addresses` (node.Node.shim_addresses) as its global
    addresses and our sysctls, and be up; return whether it was missing or down (the kernel had dropped its
    routes). Call require_master first.

    A device that only has the shim's name is refused and left untouched. Everything is compared with the
    current state first, so a second ADD changes nothing, and a shim left half-configured gets completed.
    """
    master = node.links[master_name]
    shim = node.links.get(shim_name)
    if shim is None:  # a new macvlan takes the master's MTU
        runner.change(iproute.add_shim(shim_name, master_name, stable_mac(master.permanent_mac, shim_name)))
        shim = Link(shim_name, "macvlan", "bridge", master_name, False, master.mtu, (), None)
    else:
        reason = foreign_reason(shim, master)
        if reason:
            raise ShimConflict(f"device {shim_name} exists but is not this plugin's shim: {reason}",
                               "rename or remove it, or set `bridge` to another name")
    drift = Drift.between(runner, master, shim, addresses)
    if drift.mtu:
        runner.change(iproute.set_link_mtu(shim_name, drift.mtu))
    for key, value, _ in drift.sysctls:  # before the shim is up, so no advertisement slips in between
        runner.set_sysctl(key, value)
    # New copies before old ones go: a shim left without an IPv4 address loses every IPv4 route through it,
    # the other pods' routes included (a DHCP renewal that changes the master's address).
    with runner.counting("address_copy"):
        for address in drift.missing:
            runner.change(iproute.add_address(address.cidr, shim_name, ipv6=address.family == "inet6"))
        for address in drift.extra:  # the master no longer has it
            runner.change(iproute.delete_address(address.cidr, shim_name))
    if not shim.up:
        runner.change(iproute.set_link_up(shim_name))
    return not shim.up


def problems(runner, node, master_name, shim_name, addresses):
    """What CHECK finds wrong with the shim, as sentences; empty when healthy. `addresses`: what it should
    carry (node.Node.shim_addresses)."""
    master, shim = node.links.get(master_name), node.links.get(shim_name)
    if master is None:
        return [f"master {master_name} does not exist"]
    conflict = master_conflict(node, master_name)
    if conflict:
        return [conflict]
    if shim is None:
        return [f"shim {shim_name} does not exist"]
    reason = foreign_reason(shim, master)
    if reason:
        return [f"shim {shim_name} is wrong: {reason}"]
    drift = Drift.between(runner, master, shim, addresses)
    found = [f"shim {shim_name} is down"] if not shim.up else []
    if drift.mtu:
        found.append(f"shim {shim_name} has MTU {shim.mtu}, master {master.mtu}")
    found += [f"shim {shim_name} lacks the node address {a.cidr}" for a in drift.missing]
    found += [f"shim {shim_name} has {a.cidr}, which is not a node address it should carry" for a in drift.extra]
    found += [f"sysctl {key} is {current}, not {value}" for key, value, current in drift.sysctls]
    return found


class Drift(namedtuple("Drift", "mtu sysctls extra missing")):
    """How an existing shim differs from what it should be: the MTU it should have (None if right), the
    sysctls [(key, wanted, current)] to set, and its global addresses to remove and to add."""

    __slots__ = ()

    @classmethod
    def between(cls, runner, master, shim, addresses):
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
        present = set(shim.global_addresses)
        return cls(master.mtu if shim.mtu != master.mtu else None, sysctls,
                   sorted(present - set(addresses), key=_order),
                   [a for a in addresses if a not in present])  # in order: the first of a family becomes primary


def _order(address):
    return (address.family, address.local, address.prefixlen)
