"""A Multus pod's reply paths: what route puts in a pod of several interfaces, and how it reads them there.

In a pod with more interfaces than ours (Multus: the cluster network on eth0, ours on net1), replies to the node
must leave by the interface their connection came in on, whatever the main table says (our routes there send
node addresses out of ours). So for every interface of the pod with global addresses, ours included, a reply
path: a rule `from <its address> lookup <its table>` (pref RULE_PREF) and that table (REPLY_TABLE + the
interface's ifindex) holding a route to each node address that main sends out of another interface, the way
this one reaches it: from ours through a node address the shim carries (onlink), from another interface as the
kernel routes to it out of that interface (`ip route get ADDRESS oif IFNAME`). Nothing else: a table without a
match sends the lookup on to main, so everything but the node goes as main says. What route owns in a pod is
thus bounded by the node's addresses, and so is what it reads there: its rules (by priority), its tables and its
own main routes (by protocol: the kernel filters), never the pod's other routes.
A rule is a records.ReplyRule, a table route a records.TableRoute.
A pod with one interface gets none of this, and one left with one interface (another attachment's DEL took the
others) needs none: CHECK asks only for the reply paths of the interfaces still there, and none of a pod left
with one. A route in one of our tables that route did not make (not proto 201) is never taken over nor deleted:
ADD and reconcile leave it and put no route of theirs to its destination in that table, and say so.
pod_routes.py installs, checks, heals and removes them with the pod's main routes (PodPlan).
"""
import ipaddress
from collections import namedtuple

from . import config, iproute, routes
from .errors import ReadTooLarge
from .records import ReplyRule, TableRoute

RULE_PREF = 32201  # before main's rule (32766), after anybody's who chose a small number on purpose
REPLY_TABLE = 2010000  # + the interface's ifindex in the pod: one table per interface
READ_LIMIT = 1 << 20  # bytes of one read of a pod: route's part of a pod is a few kB, the rest is the pod's choice

# What of route's one read finds in the pod, of one family: the routes of protocol 201 in main, those of route's
# tables (of any protocol: the tables are route's), the rules at RULE_PREF.
Found = namedtuple("Found", "main tables rules")


def observe(runner, netns):
    """The pod's links and addresses (what paths needs of the pod), in one ip call of at most READ_LIMIT
    bytes. Without nsenter, nothing: a pod that needs no route of ours inside still gets its ADD."""
    if not runner.has_program("nsenter"):
        return []
    return runner.read([iproute.show_addresses()], netns=netns, limit=READ_LIMIT)


def paths(runner, netns, links, ifname, node_links, carried, shim):
    """(rules, table routes) for the pod whose links observe() read, our interface `ifname`; none when no other
    interface of the pod has a global address. `node_links` the node's Links, `carried` the node addresses the
    shim carries (Address), `shim` its name. Asks the pod's kernel how its other interfaces reach the node
    addresses main sends out of ours (one ip call)."""
    interfaces = {name: (REPLY_TABLE + ifindex, found) for name, (ifindex, found) in addressed(links).items()}
    if ifname not in interfaces or len(interfaces) < 2:
        return [], []
    rules = [ReplyRule(a["local"], table) for table, found in interfaces.values() for a in found]
    subnets = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network for a in interfaces[ifname][1]]
    node = {a for link in node_links.values() if link.name != shim for a in link.global_addresses} | set(carried)
    # main sends these out of ours: the carried ones (our on-link routes) and those in our subnets
    toward_ours = sorted({a.local for a in node if a in carried or any(a.ip in net for net in subnets)})
    table_routes = _to_other_node_addresses(interfaces[ifname][0], ifname, subnets, node, carried)
    table_routes += _the_way_out_of(runner, netns, {k: v for k, v in interfaces.items() if k != ifname}, toward_ours)
    return rules, table_routes


def leave_foreign(runner, netns, table_routes):
    """`table_routes` but those whose table holds a route to their destination that route did not make (not
    proto 201): route never takes one over (ip route replace would, and DEL would then delete it), and says so.
    One read of the tables per family they have, bounded; a pod that filled them is not read (ReadTooLarge)."""
    seen = {}
    for ipv6 in sorted({is_ipv6(route.dst) for route in table_routes}):
        tables = sorted({route.table for route in table_routes if is_ipv6(route.dst) == ipv6})
        try:
            answers = runner.read_each([iproute.show_table(t) for t in tables], ipv6, netns, READ_LIMIT)
        except ReadTooLarge:
            continue
        seen[ipv6] = Found([], dict(zip(tables, answers)), [])
    found = foreign(table_routes, seen)
    say_foreign(runner, found)
    return [route for route in table_routes if route not in found]


def foreign(table_routes, seen):
    """The `table_routes` whose table and destination hold a route that is not route's, among what a read of
    the tables saw (`seen`: {ipv6: Found}, pod_routes._read's or leave_foreign's)."""
    taken = {(table, routes.prefix_of(obj.get("dst", ""), ipv6)) for ipv6, family in (seen or {}).items()
             for table, objs in family.tables.items() for obj in objs if not made_by_route(obj)}
    return [route for route in table_routes if (route.table, route.dst) in taken]


def say_foreign(runner, foreign):
    for route in foreign:
        runner.journal.comment(f"the pod's table {route.table} has a route to {route.dst} that route did not make: "
                               "left as it is, and none of route's put there")


def addressed(links):
    """{ifname: (ifindex, global address objects)} of the pod's interfaces that have a global address."""
    found = {}
    for link in links:
        addresses = [a for a in link.get("addr_info", ()) if a.get("scope") == "global" and "local" in a]
        # a name ip printed that is no kernel name (bytes that were no UTF-8) could not be given back to ip
        if addresses and link.get("ifname") != "lo" and config.is_kernel_ifname(link.get("ifname")):
            found[link["ifname"]] = (link["ifindex"], addresses)
    return found


def _to_other_node_addresses(table, ifname, subnets, node, carried):
    """Routes to the node addresses the shim does not carry (another NIC's, a cluster CNI's host-side veth's),
    through one it does, onlink: the node may connect to our interface from any of them."""
    found = {}
    for address in sorted(node, key=lambda a: a.local):
        via = next((c.local for c in carried if c.ip.version == address.ip.version), None)
        ours = [n for n in subnets if n.version == address.ip.version]  # our interface has that family
        if via and ours and address not in carried and not any(address.ip in n for n in ours):
            dst = iproute.host_prefix(address.local)
            found.setdefault(dst, TableRoute(table, dst, via, ifname, True, None))
    return list(found.values())


def _the_way_out_of(runner, netns, others, destinations):
    """Routes of each of the `others` (ifname -> (table, its addresses)) to each of `destinations` (node addresses
    of a family it has) as the pod's kernel routes to them out of that interface: through its gateway (onlink:
    the table has no route to the gateway itself), or on its link. One ip call (ip takes each get's family from
    its address)."""
    asked = [(name, table, d) for name, (table, found) in others.items() for d in destinations
             if any(is_ipv6(a["local"]) == is_ipv6(d) for a in found)]
    answers = runner.read([iproute.get_route_out_of(d, name) for name, _, d in asked], netns=netns, limit=READ_LIMIT)
    found = []
    for name, table, destination in asked:
        answer = next((a for a in answers if a.get("dev") == name and a.get("dst") == destination), None)
        if answer is not None:
            gateway = answer.get("gateway")
            found.append(TableRoute(table, iproute.host_prefix(destination), gateway, name, gateway is not None, None))
    return found


def still_wanted(pod_plan, addressed):
    """The reply paths of the plan that the pod's interfaces now (`addressed`: addressed()) still call for:
    another attachment's DEL takes its interface, with its addresses and routes (ours in its table too), and a
    pod left with one interface needs none."""
    if len(addressed) < 2:
        return pod_plan._replace(rules=[], table_routes=[])
    held = {a["local"] for _, addresses in addressed.values() for a in addresses}
    return pod_plan._replace(rules=[rule for rule in pod_plan.rules if rule.address in held],
                             table_routes=[route for route in pod_plan.table_routes if route.dev in addressed])


def made_by_route(obj):
    """Whether a route object of a read of route's tables is one route made (protocol 201)."""
    return obj.get("protocol", iproute.ROUTE_PROTO) == iproute.ROUTE_PROTO


def is_ipv6(address):
    return ":" in address
