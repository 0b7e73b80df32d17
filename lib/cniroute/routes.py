"""Host routes to pod IPs on the shim: `<ip>/32 dev <shim> scope link proto 201` (IPv6 /128)."""
import ipaddress

from . import iproute
from .errors import CommandFailed

# ip answers each `route show to exact P` with a dump of the whole table, filtered in ip: a few prefixes are
# cheaper looked up one by one (a node has thousands of routes), more read the table once.
EXACT_LOOKUPS = 16


def observe(runner, prefixes, netns=None):
    """{prefix: [route objects of the main table with exactly that destination]} for the given prefixes."""
    found = {p: [] for p in prefixes}
    for ipv6, wanted in _by_family(prefixes):
        collect(found, runner.read(route_queries(wanted), ipv6=ipv6, netns=netns), ipv6)
    return found


def observe_with_neighbours(runner, prefixes):
    """observe() of the node, and the node's neighbour entries of the prefixes' addresses (`neighbours`), each
    family's in one batch: DEL's one read, as ADD has one (Node.observe)."""
    found, entries = {p: [] for p in prefixes}, []
    for ipv6, wanted in _by_family(prefixes):
        queries = route_queries(wanted)
        answers = runner.read_each(queries + [iproute.show_neighbours(a) for a in addresses(wanted)], ipv6=ipv6)
        collect(found, [route for answer in answers[:len(queries)] for route in answer], ipv6)
        entries += [entry for answer in answers[len(queries):] for entry in answer]
    return found, entries


def _by_family(prefixes):
    """(ipv6, the prefixes of that family) for each family present: ip's batch lines cannot carry -6."""
    for ipv6 in (False, True):
        wanted = [p for p in prefixes if (iproute.family(p) == 6) == ipv6]
        if wanted:
            yield ipv6, wanted


def route_queries(prefixes):
    """The reads of the routes to these prefixes (one family's), whose answers collect() sorts."""
    return [iproute.show_route(p) for p in prefixes] if len(prefixes) <= EXACT_LOOKUPS else [iproute.show_routes()]


def collect(found, routes, ipv6):
    """Add each route of `routes` (one family's) to the list of its destination in `found`, if there is one."""
    for route in routes:
        prefix = prefix_of(route.get("dst", ""), ipv6)
        if prefix in found:
            found[prefix].append(route)


def prefix_of(dst, ipv6):
    """ip prints a /0 as "default" and a host route without its length."""
    if dst in ("default", ""):
        return "::/0" if ipv6 else "0.0.0.0/0"
    return dst if "/" in dst else iproute.host_prefix(dst)


def is_ours(route, shim):
    return route.get("dev") == shim and route.get("protocol") == iproute.ROUTE_PROTO


def install(runner, prefixes, shim):
    """Point every prefix at the shim. `replace` is idempotent and takes over a stale route to the same IP."""
    for prefix in prefixes:
        runner.change(iproute.replace_route(prefix, shim))


def restore(runner, prefixes, shim, observed=None):
    """Put back the route of every prefix that has none in shape on the shim (what CHECK would report).
    `observed`: what was read of some of them already (Node.observe's routes_to); the others are read here."""
    have = _with_the_rest(runner, prefixes, observed)
    install(runner, [p for p in prefixes if _problem(p, have[p], shim)], shim)


def remove(runner, observed, shim):
    """Delete our routes among those `observed` (what observe() found, by prefix); what is already gone (or goes
    meanwhile), or somebody else's, is left alone."""
    for prefix, found in observed.items():
        if any(is_ours(route, shim) for route in found):
            _delete(runner, iproute.delete_route(prefix, shim),
                    lambda p=prefix: any(is_ours(route, shim) for route in observe(runner, [p])[p]))


def neighbours(runner, prefixes):
    """The node's neighbour entries of the pod addresses in these prefixes, on any device."""
    return runner.read([iproute.show_neighbours(a) for a in addresses(prefixes)])


def forget_neighbours(runner, entries, shim):
    """Drop the node's cached MAC of each pod address on the shim (ADD and DEL), given the entries read of the
    pod's addresses (`neighbours`, or Node.observe): the address may come back on another pod, with another
    MAC, and a REACHABLE entry would send the node's packets to the old one until it expires. Entries someone
    set by hand (PERMANENT, NOARP) stay."""
    for entry in entries:
        if entry.get("dev") == shim and "dst" in entry and not {"PERMANENT", "NOARP"} & set(entry.get("state", ())):
            address = entry["dst"]
            _delete(runner, iproute.delete_neighbour(address, shim),
                    lambda a=address: any(e.get("dev") == shim for e in runner.read([iproute.show_neighbours(a)])))


def _delete(runner, argv, still_there):
    """Run the delete `argv`. If it fails, `still_there()` reads again: what went away between our read and the
    delete (a flush by someone else, the kernel's own expiry of a neighbour entry) is what the delete wanted, and
    DEL must not fail for it."""
    try:
        runner.change(argv)
    except CommandFailed:
        if still_there():
            raise
        runner.journal.comment("gone before the delete: fine")


def addresses(prefixes):
    """'192.168.1.2/32' -> '192.168.1.2'."""
    return [str(ipaddress.ip_interface(p).ip) for p in prefixes]


def problems(runner, prefixes, shim, observed=None):
    """What CHECK finds wrong with the pod routes, as sentences; empty when healthy. `observed`: what was read
    of some of them already (Node.observe's routes_to); the others are read here."""
    have = _with_the_rest(runner, prefixes, observed)
    return [text for text in (_problem(p, have[p], shim) for p in prefixes) if text]


def _with_the_rest(runner, prefixes, observed):
    """observe() of `prefixes`, of which `observed` has some already."""
    have = dict(observed or {})
    have.update(observe(runner, [p for p in prefixes if p not in have]))
    return have


def _problem(prefix, have, shim):
    """What is wrong with the routes `have` to `prefix`, or None when one on the shim serves it."""
    on_shim = [r for r in have if r.get("dev") == shim]
    if not on_shim:
        elsewhere = ", ".join(sorted({r.get("dev", "?") for r in have}))
        return f"no route to {prefix} on {shim}" + (f" (it goes via {elsewhere})" if elsewhere else "")
    if iproute.family(prefix) == 4 and not any(r.get("scope") == "link" for r in on_shim):
        return f"route to {prefix} on {shim} is not scope link"
    return None
