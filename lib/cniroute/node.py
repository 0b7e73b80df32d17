"""The node as one read sees it: every link with its addresses, and the routes of every table.

ADD, CHECK and STATUS take one snapshot (`ip -json -d addr show` and `ip -json -d route show table all`, in
one batched ip call) and take from it what they need: the master and the shim, the master's ipvlan children,
and what a pod IP must never be (an address or a next hop of the node).
"""
import ipaddress
from collections import namedtuple

from . import iproute

IPVLAN_KINDS = ("ipvlan", "ipvtap")


class Address(namedtuple("Address", "family local prefixlen scope")):
    """One address of a link: family "inet"/"inet6", scope "global"/"link"/..."""

    __slots__ = ()

    @property
    def cidr(self):
        return f"{self.local}/{self.prefixlen}"

    @property
    def ip(self):
        return ipaddress.ip_address(self.local)


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
        return [a for a in self.addresses if a.scope == "global"]


class Node(namedtuple("Node", "links routes")):
    """links: {name: Link}; routes: the route objects of `ip -json -d route show table all` (both families)."""

    __slots__ = ()

    @classmethod
    def observe(cls, runner):
        links, routes = {}, []
        for obj in runner.read([iproute.show_addresses(), iproute.show_all_routes()]):
            if "ifname" in obj:
                links[obj["ifname"]] = Link.from_json(obj)
            elif "dst" in obj:
                routes.append(obj)
        return cls(links, routes)

    def ipvlan_children(self, master):
        """ipvlan devices on `master` in the node's namespace (those moved into pods cannot be seen from here)."""
        return sorted(link.name for link in self.links.values() if link.kind in IPVLAN_KINDS and link.parent == master)

    def collisions(self, prefixes, shim):
        """Sentences for the pod IPs that a route to the pod would take from the node itself: an address of
        the node (the shim's copies aside) or a next hop of any of its routes (aside from routes through
        the shim, which lead to pods anyway). Empty when there is none."""
        found = []
        for prefix in prefixes:
            ip = ipaddress.ip_interface(prefix).ip
            holders = [link.name for link in self.links.values()
                       if link.name != shim and any(a.ip == ip for a in link.addresses)]
            if holders:
                found.append(f"pod IP {ip} is an address of the node (on {', '.join(holders)})")
            users = [_describe(r) for r in self.routes
                     if any(gateway == ip and dev != shim for gateway, dev in _next_hops(r))]
            if users:
                more = f" and {len(users) - 3} more" if len(users) > 3 else ""
                found.append(f"pod IP {ip} is the gateway of the node's route {'; '.join(users[:3])}{more}")
        return found


def _next_hops(route):
    """(gateway as an ip_address, device) of each next hop with a gateway: the route's own, or a multipath
    route's."""
    for hop in (route, *route.get("nexthops", ())):
        text = hop.get("gateway") or (hop.get("via") or {}).get("host")
        try:
            gateway = ipaddress.ip_address(text) if text else None
        except ValueError:  # not an address ip would print; nothing to compare
            continue
        if gateway is not None:
            yield gateway, hop.get("dev") or route.get("dev")


def _describe(route):
    hops = [f"via {g} dev {d}" for g, d in _next_hops(route)]
    table = route.get("table", "main")
    return " ".join([route["dst"], *hops] + ([f"table {table}"] if table != "main" else []))
