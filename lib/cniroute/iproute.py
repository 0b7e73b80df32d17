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


def show_gateway_routes():
    """Every route, of every table and both families (ip dumps both for `table all`; -d names the table), that
    can have a next hop: in IPv4 only a route of scope global can (the kernel refuses a gateway on any other),
    and every IPv6 route is of scope global. So the node's link-scope routes to its pods, one per pod, are not
    read: an ADD on a node with a thousand pods reads what it reads on an empty one."""
    return ["route", "show", "table", "all", "scope", "global"]


def show_direct_default_routes():
    """The default routes without a next hop (`default dev ppp0`), which IPv4 gives scope link, so that
    show_gateway_routes leaves them out; of every table."""
    return ["route", "show", "table", "all", "default", "scope", "link"]


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


def show_all_routes():
    """Every route of every table, both families (route remove's read of the node)."""
    return ["route", "show", "table", "all"]


def show_rules():
    """The policy rules of the batch's family."""
    return ["rule", "show"]


def show_rules_at(pref):
    """The policy rules of the batch's family at one priority (ip filters them)."""
    return ["rule", "show", "pref", str(pref)]


def show_own_routes():
    """The plugin's routes of the main table, of the batch's family: the kernel filters them by protocol, so the
    answer is as long as what is ours, whatever else the table holds (ip then leaves `protocol` out)."""
    return ["route", "show", "table", "main", "proto", ROUTE_PROTO]


def show_table(table):
    """Every route of one table, of the batch's family: the kernel filters them by table (ip then leaves `table`
    out). A table that does not exist answers with nothing."""
    return ["route", "show", "table", str(table)]


def get_route_out_of(address, dev):
    """The route the kernel picks for a packet to `address` that must leave by `dev` (one answer)."""
    return ["route", "get", address, "oif", dev]


def get_route(address):
    """The route the kernel picks for a packet to `address` (rules and every table included)."""
    return ["route", "get", address]


def get_route_from(address, source):
    """The route the kernel picks for a packet to `address` sent from the local address `source` (source rules)."""
    return ["route", "get", address, "from", source]


def show_neighbours(address):
    """The node's neighbour entries (the MACs it has cached) for `address`, on any device ("dev" says which):
    never an error, also when the device of interest does not exist yet, so it can join any batch."""
    return ["neigh", "show", "to", address]


# --- writes ---

def add_shim(name, master, mac=None):
    # `name` keeps a shim called like an ip keyword ("up", "mtu"...) a name: without it, `ip link add up ...`
    # creates an automatically named macvlan and sets it up.
    return ["link", "add", "name", name, "link", master, *(["address", mac] if mac else []), "type", "macvlan",
            "mode", "bridge"]


def delete_link(name):
    return ["link", "del", "dev", name]


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


def replace_table_route(table, dst, gateway, dev, onlink, metric):
    """A route of a reply table in the pod (pod_routes: [table, dst, gateway, dev, onlink, metric])."""
    return ["route", "replace", dst, *_next_hop(gateway, dev, onlink, metric), "table", str(table),
            "proto", ROUTE_PROTO]


def delete_table_route(table, dst, gateway, dev, onlink, metric):
    return ["route", "del", dst, *_next_hop(gateway, dev, onlink, metric), "table", str(table), "proto", ROUTE_PROTO]


def _next_hop(gateway, dev, onlink, metric):
    hop = ["via", gateway, "dev", dev, *(["onlink"] if onlink else [])] if gateway else ["dev", dev, "scope", "link"]
    return hop + (["metric", str(metric)] if metric is not None else [])


def flush_table(table):
    """Delete the plugin's routes of one table, of the batch's family (in a pod: a reply table): the kernel
    filters them by protocol, so a route of the table that another made stays and the dump is as long as ours."""
    return ["route", "flush", "table", str(table), "proto", ROUTE_PROTO]


def add_rule(address, table, pref):
    """`from address lookup table` in the pod; run in a batch of the address's family (-6)."""
    return ["rule", "add", "from", address, "lookup", str(table), "pref", str(pref)]


def delete_rule(address, table, pref):
    return ["rule", "del", "from", address, "lookup", str(table), "pref", str(pref)]


def delete_neighbour(address, dev):
    return ["neigh", "del", address, "dev", dev]


def batch_arrays(text):
    """The JSON arrays of a stream of them, as `ip -json -batch` prints them: one per command that succeeded
    (a failing one prints nothing)."""
    decoder = json.JSONDecoder()
    arrays, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return arrays
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise CommandFailed("unparseable ip -json output", f"{e}: {text[pos:pos + 200]!r}") from None
        arrays.append(value if isinstance(value, list) else [value])
