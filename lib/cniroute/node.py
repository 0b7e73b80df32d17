"""The node as one read sees it: every link with its addresses, and the routes (of every table) that matter.

ADD, CHECK and STATUS take one snapshot (`ip -json -d addr show` and the routes that may have a next hop, in
one batched ip call; see Node.observe) and take from it what they need: the master and the shim, the master's
ipvlan children, the node addresses the shim carries, and what a pod IP must never be (an address or a next hop
of the node).
"""
import ipaddress
from collections import namedtuple

from . import iproute, routes

# Devices whose addresses the shim never takes: tunnels and devices of other CNIs and of kube-proxy hold
# overlay gateways, service VIPs or node-local DNS, not the address the node is known by. A macvlan or ipvlan
# in the node's namespace is a shim (ours or another network's) holding copies: taking them would keep an
# address alive that the node itself gave up.
FOREIGN_KINDS = frozenset({
    "vxlan", "geneve", "gre", "gretap", "ip6gre", "ip6gretap", "erspan", "ip6erspan", "ipip", "ip6tnl", "sit",
    "vti", "vti6", "wireguard", "bareudp", "tun", "dummy", "macvlan", "macvtap", "ipvlan", "ipvtap"})
FOREIGN_NAMES = ("docker", "cni", "cbr", "cali", "cilium", "lxc", "flannel", "vxlan", "tunl", "weave", "kube-",
                 "nodelocaldns", "antrea-", "ovn-k8s-", "genev_sys_", "podman", "virbr")
IPVLAN_KINDS = ("ipvlan", "ipvtap")
FAMILIES = ("inet", "inet6")


class Address(namedtuple("Address", "family local prefixlen scope")):
    """One address of a link: family "inet"/"inet6", scope "global"/"link"/..."""

    __slots__ = ()

    @property
    def cidr(self):
        return f"{self.local}/{self.prefixlen}"

    @property
    def ip(self):
        return ipaddress.ip_address(self.local)


class Link(namedtuple("Link", "name kind mode parent up mtu addresses permanent_mac")):
    """What `ip -json -d addr show` says of a link: kind is linkinfo's info_kind ("macvlan", "veth"; None
    for plain devices), mode the macvlan mode, parent the lower device, up the administrative state,
    permanent_mac the NIC's burnt-in MAC ("permaddr", which ip shows when the MAC was changed since), else
    its MAC."""

    __slots__ = ()

    @classmethod
    def from_json(cls, obj):
        info = obj.get("linkinfo") or {}
        return cls(
            name=obj["ifname"], kind=info.get("info_kind"), mode=(info.get("info_data") or {}).get("mode"),
            parent=obj.get("link"), up="UP" in obj.get("flags", ()), mtu=obj.get("mtu", 0),
            addresses=tuple(Address(a["family"], a["local"], a["prefixlen"], a.get("scope", "global"))
                            for a in obj.get("addr_info", ()) if "local" in a),  # as ip lists them: primary first
            permanent_mac=obj.get("permaddr") or obj.get("address"))

    @property
    def global_addresses(self):
        """What the node is reached at; link-local addresses are per link and never copied."""
        return [a for a in self.addresses if a.scope == "global"]

    @property
    def foreign(self):
        """A tunnel, another CNI's device or a shim: see FOREIGN_KINDS."""
        return self.kind in FOREIGN_KINDS or self.name.startswith(FOREIGN_NAMES)


class Node(namedtuple("Node", "links routes neighbours routes_to")):
    """links: {name: Link}; routes: the route objects (both families, every table) that have or may have a next
    hop, and the default routes (iproute.show_gateway_routes); neighbours: the neighbour entries of the
    addresses observe() was asked about (with "dev"); routes_to: what routes.observe finds of the IPv4 prefixes
    observe() was asked about."""

    __slots__ = ()

    @classmethod
    def observe(cls, runner, neighbours_of=(), routes_to=()):
        """The node in one ip call. `neighbours_of`: addresses whose neighbour entries to read along with it (ADD
        drops the node's cached MAC of the pod's addresses: one ip process fewer than a read of its own).
        `routes_to`: prefixes whose routes to read along with it (CHECK), the IPv4 ones: an IPv6 route read
        needs a batch of its own (-6)."""
        ipv4 = [p for p in routes_to if iproute.family(p) == 4]
        pod_queries = routes.route_queries(ipv4) if ipv4 else []
        addresses, gateway_routes, direct_defaults, *answers = runner.read_each(
            [iproute.show_addresses(), iproute.show_gateway_routes(), iproute.show_direct_default_routes(),
             *pod_queries, *(iproute.show_neighbours(a) for a in neighbours_of)])
        links = {obj["ifname"]: Link.from_json(obj) for obj in addresses}
        found = {p: [] for p in ipv4}
        routes.collect(found, [route for answer in answers[:len(pod_queries)] for route in answer], False)
        return cls(links, gateway_routes + direct_defaults,
                   [entry for answer in answers[len(pod_queries):] for entry in answer], found)

    def ipvlan_children(self, master):
        """ipvlan devices on `master` in the node's namespace (those moved into pods cannot be seen from here)."""
        return sorted(link.name for link in self.links.values() if link.kind in IPVLAN_KINDS and link.parent == master)

    def default_device(self, family):
        """The device of the main table's default route of `family` ("inet"/"inet6"), the lowest metric first."""
        defaults = sorted((r for r in self.routes if r.get("dst") == "default" and r.get("table", "main") == "main"
                           and r.get("type", "unicast") == "unicast" and _family(r) == family),
                          key=lambda r: r.get("metric", 0))
        devices = (dev for route in defaults for _, dev in _next_hops(route, with_gateway=False) if dev)
        return next(devices, None)

    def shim_addresses(self, master, shim, selectors=None):
        """The node addresses the shim carries, the master's first (its primary is what host->pod traffic
        comes from, as before).

        Always the master's global addresses. For a family the master has none of, those of the device of that
        family's default route, which is where the node's own address (its Kubernetes InternalIP) lives.
        `selectors` (nodeAddresses: networks) replaces that choice: the global addresses inside any of them,
        on any device but the master, the shim and foreign ones (FOREIGN_KINDS).
        """
        chosen = list(self.links[master].global_addresses)
        if selectors is None:
            for family in FAMILIES:
                if not any(a.family == family for a in chosen):
                    link = self.links.get(self.default_device(family))
                    if link is not None and link.name not in (master, shim) and not link.foreign:
                        chosen += [a for a in link.global_addresses if a.family == family]
        else:
            for link in self.links.values():
                if link.name not in (master, shim) and not link.foreign:
                    chosen += [a for a in link.global_addresses if any(a.ip in net for net in selectors)]
        return list(dict.fromkeys(chosen))  # an address on two devices is carried once

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


def _next_hops(route, with_gateway=True):
    """(gateway as an ip_address or None, device) of each next hop: the route's own, or a multipath route's."""
    for hop in (route, *route.get("nexthops", ())):
        text = hop.get("gateway") or (hop.get("via") or {}).get("host")
        dev = hop.get("dev") or route.get("dev")
        try:
            gateway = ipaddress.ip_address(text) if text else None
        except ValueError:  # not an address ip would print; nothing to compare
            continue
        if gateway is not None or not with_gateway:
            yield gateway, dev


def _family(route):
    """"inet" or "inet6". ip prints every /0 as "default"; then a next hop tells, or the router preference
    that every IPv6 route carries and no IPv4 route does."""
    if route.get("dst") != "default":
        return "inet6" if ":" in route["dst"] else "inet"
    gateway = next((g for g, _ in _next_hops(route)), None)
    if gateway is not None and not route.get("via"):
        return "inet6" if gateway.version == 6 else "inet"
    return "inet6" if "pref" in route else "inet"


def _describe(route):
    hops = [f"via {g} dev {d}" for g, d in _next_hops(route)]
    table = route.get("table", "main")
    return " ".join([route["dst"], *hops] + ([f"table {table}"] if table != "main" else []))
