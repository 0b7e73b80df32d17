"""Pure builders of ip(8) arguments, and the parser of what `ip -json -batch` prints. Each builder returns the
words after `ip`; only the runner executes them.

Reads are `ip -json -d` queries the runner batches into one `ip -batch` call per address family; writes are
plain `ip link` / `ip route` commands, one process each, so that the replay log holds them one per line.
"""
import ipaddress
import json

from .errors import CommandFailed

# Routes this plugin installs carry their own protocol number, so that GC and DEL can tell them from
# anybody else's route to the same prefix (see /etc/iproute2/rt_protos: 201 is unassigned).
ROUTE_PROTO = "201"


def host_prefix(address):
    """'192.168.1.2/16' or '192.168.1.2' -> '192.168.1.2/32'; IPv6 gets /128."""
    ip = ipaddress.ip_interface(address).ip
    return f"{ip}/{ip.max_prefixlen}"


def family(prefix):
    return ipaddress.ip_interface(prefix).version


# --- reads (run with -json -d; a missing device simply yields no object) ---

def show_addresses():
    """Every link with its addresses, and with linkinfo (kind, macvlan mode, lower device) thanks to -d."""
    return ["addr", "show"]


def show_all_routes():
    """The routes of every table, of both families (ip dumps both when given `table all`); -d names the table."""
    return ["route", "show", "table", "all"]


def show_route(prefix):
    """Routes of the main table whose destination is exactly this prefix."""
    return ["route", "show", "to", "exact", prefix]


def show_routes():
    """Every route of the main table."""
    return ["route", "show", "table", "main"]


def show_default_route():
    return ["route", "show", "default"]


def show_link(name):
    """One link with its addresses (nothing, and exit 1, when it does not exist)."""
    return ["addr", "show", "dev", name]


def get_route(address):
    """The route the kernel picks for a packet to `address` (rules and every table included)."""
    return ["route", "get", address]


def show_neighbour(address, dev):
    """The node's neighbour entry (the MAC it has cached) for `address` on `dev`; printed without its dev."""
    return ["neigh", "show", "to", address, "dev", dev]


# --- writes ---

def add_shim(name, master, mac=None):
    # `name` keeps a shim called like an ip keyword ("up", "mtu"...) a name: without it, `ip link add up ...`
    # creates an automatically named macvlan and sets it up.
    return ["link", "add", "name", name, "link", master, *(["address", mac] if mac else []), "type", "macvlan",
            "mode", "bridge"]


def set_link_up(name):
    return ["link", "set", "dev", name, "up"]


def set_link_mtu(name, mtu):
    return ["link", "set", "dev", name, "mtu", str(mtu)]


def replace_route(prefix, dev):
    return ["route", "replace", prefix, "dev", dev, "scope", "link", "proto", ROUTE_PROTO]


def delete_route(prefix, dev):
    return ["route", "del", prefix, "dev", dev, "proto", ROUTE_PROTO]


def add_address(cidr, dev, ipv6):
    """A copy of a node address: no prefix route (the master keeps that), no DAD delay (it is ours already)."""
    return ["addr", "add", cidr, "dev", dev, "noprefixroute", *(["nodad"] if ipv6 else [])]


def delete_address(cidr, dev):
    return ["addr", "del", cidr, "dev", dev]


def replace_gateway_route(cidr, gateway, dev):
    """A pod-side route to `cidr` through the node (the gateway is a node address the shim carries)."""
    return ["route", "replace", cidr, "via", gateway, "dev", dev, "proto", ROUTE_PROTO]


def delete_gateway_route(cidr, gateway, dev):
    return ["route", "del", cidr, "via", gateway, "dev", dev, "proto", ROUTE_PROTO]


def delete_neighbour(address, dev):
    return ["neigh", "del", address, "dev", dev]


def batch_objects(text):
    """The objects of a stream of concatenated JSON arrays, as `ip -json -batch` prints them."""
    decoder = json.JSONDecoder()
    objects, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return objects
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise CommandFailed("unparseable ip -json output", f"{e}: {text[pos:pos + 200]!r}") from None
        objects.extend(value if isinstance(value, list) else [value])
