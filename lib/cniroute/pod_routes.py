"""Routes the plugin puts inside the pod (entering its namespace with `nsenter --net=CNI_NETNS`).

A pod route (records.PodRoute) is a destination and a gateway:
- <node address>/32 without one: `dev <ifname> scope link`, to a node address outside the pod's subnets that
  the shim carries (docs/node-layouts.md): the pod reaches the node on its own link, through the shim;
- <cidr> via <node address>: `via <node address> dev <ifname>`, routeViaHost's (via_host.py).
They are installed in that order (a gateway must be reachable before a route can use it), removed in reverse.

In a pod with more interfaces than ours (Multus: the cluster network on eth0, ours on net1), replies must leave
by the interface their connection came in on, whatever the main table says (our routes there send the node's
addresses out of ours). So for every interface of the pod with global addresses, ours included, a reply path:
a rule `from <its address> lookup <its table>` (pref RULE_PREF) and that table (REPLY_TABLE + the interface's
ifindex) holding the interface's own routes, copied from main; ours also gets a route to every other node
address through a node address the shim carries. Main is left as it is, so what the pod starts goes as before.
A rule is a records.ReplyRule, a table route a records.TableRoute.
A pod with one interface gets none of this, and one left with one interface (another attachment's DEL took the
others) needs none: CHECK asks only for the reply paths of the interfaces still there, and none of a pod left
with one. A route in one of our tables that route did not make (not proto 201) is never taken over nor deleted:
ADD and reconcile leave it and put no route of theirs to its destination in that table, and say so.
"""
import ipaddress
from collections import namedtuple

from . import config, iproute, routes, via_host
from .errors import CommandFailed, CommandTimeout, PodUnreachable
from .records import PodRoute, ReplyRule, TableRoute

LINK_SCOPE = 253  # RT_SCOPE_LINK, as CNI 1.1 results give a route's scope
RULE_PREF = 32201  # before main's rule (32766), after anybody's who chose a small number on purpose
REPLY_TABLE = 2010000  # + the interface's ifindex in the pod: one table per interface


class PodPlan(namedtuple("PodPlan", "routes rules table_routes", defaults=((), ()))):
    """Everything the plugin puts in the pod: `routes` [PodRoute] in main on our interface (see above), the
    reply paths' `rules` [ReplyRule] and `table_routes` [TableRoute]."""

    __slots__ = ()


def plan(attachment):
    """The pod-side changes of an attachment, from its record alone (ADD, DEL, CHECK and reconcile use this)."""
    return PodPlan(attachment.pod_routes, attachment.reply_rules, attachment.reply_routes)


def observe(runner, netns):
    """What reply_paths needs of the pod, in one ip call: (address objects, route objects of every table and
    both families). Without nsenter, nothing: a pod that needs no route of ours inside still gets its ADD."""
    if not runner.has_program("nsenter"):
        return [], []
    return tuple(runner.read_each([iproute.show_addresses(), iproute.show_all_routes()], netns=netns))


def reply_paths(seen, ifname, main_routes, node_links, carried, shim):
    """(rules, table routes, foreign) for the pod as observe() saw it, our interface `ifname` about to get
    `main_routes` ([PodRoute]); none when no other interface of the pod has a global address. `node_links` the
    node's Links, `carried` the node addresses the shim carries (Address), `shim` its name. `foreign`: the
    table routes left out because a route that is not ours has their table and destination (say_foreign)."""
    links, pod_table = seen
    ours = _addressed(links)
    if ifname not in ours or len(ours) < 2:
        return [], [], []
    rules, table_routes = [], []
    for name, (ifindex, found) in ours.items():
        table = REPLY_TABLE + ifindex
        rules += [ReplyRule(a["local"], table) for a in found]
        copied = [TableRoute(table, routes.prefix_of(r["dst"], _is_ipv6_route(r)), r.get("gateway"), name,
                             "onlink" in r.get("flags", ()), r.get("metric"))
                  for r in pod_table if r.get("table", "main") == "main" and r.get("dev") == name
                  and r.get("type", "unicast") == "unicast" and r.get("protocol") != iproute.ROUTE_PROTO]
        if name == ifname:
            copied += [TableRoute(table, route.dst, route.gateway, name, False, None) for route in main_routes]
            copied += _to_other_node_addresses(table, name, found, copied, node_links, carried, shim)
        table_routes += sorted(copied, key=lambda route: route.gateway is not None)  # next hops' own routes first
    taken = {(str(r.get("table")), routes.prefix_of(r["dst"], _is_ipv6_route(r))) for r in pod_table
             if "dst" in r and r.get("protocol") != iproute.ROUTE_PROTO}
    foreign = [route for route in table_routes if (str(route.table), route.dst) in taken]
    return rules, [route for route in table_routes if route not in foreign], foreign


def say_foreign(runner, foreign):
    for route in foreign:
        runner.journal.comment(f"the pod's table {route.table} has a route to {route.dst} that route did not make: "
                               "left as it is, and none of route's put there")


def _addressed(links):
    """{ifname: (ifindex, global address objects)} of the pod's interfaces that have a global address."""
    found = {}
    for link in links:
        addresses = [a for a in link.get("addr_info", ()) if a.get("scope") == "global" and "local" in a]
        # a name ip printed that is no kernel name (bytes that were no UTF-8) could not be given back to ip
        if addresses and link.get("ifname") != "lo" and config.is_kernel_ifname(link.get("ifname")):
            found[link["ifname"]] = (link["ifindex"], addresses)
    return found


def _to_other_node_addresses(table, ifname, pod_addresses, copied, node_links, carried, shim):
    """Routes to the node addresses the shim does not carry (another NIC's, a cluster CNI's host-side veth's),
    through one it does, onlink: the node may connect to our interface from any of them."""
    subnets = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network for a in pod_addresses]
    have = {route.dst for route in copied}
    found = []
    for link in node_links.values():
        if link.name == shim:
            continue
        for address in link.global_addresses:
            via = next((c.local for c in carried if c.ip.version == address.ip.version), None)
            dst = iproute.host_prefix(address.local)
            ours = [n for n in subnets if n.version == address.ip.version]  # our interface has that family
            if via and ours and address not in carried and dst not in have and not any(address.ip in n for n in ours):
                have.add(dst)
                found.append(TableRoute(table, dst, via, ifname, True, None))
    return found


def on_link(addresses, master, pod_addresses):
    """[PodRoute] on-link to the node addresses the shim carries that the pod cannot reach on its own link
    otherwise: not the master's (with those, nothing changes from before), of a family the pod has, and
    outside every subnet of the pod (`pod_addresses`: "ip/len" of its interface)."""
    subnets = [ipaddress.ip_interface(a).network for a in pod_addresses]
    versions = {net.version for net in subnets}
    return [PodRoute(iproute.host_prefix(a.local), None) for a in addresses
            if a not in master.addresses and a.ip.version in versions and not any(a.ip in net for net in subnets)]


def install(runner, pod_plan, netns, ifname):
    """Put the plan in the pod: every route and the IPv4 rules in one ip call, the IPv6 rules in another (ip
    takes a rule's family from its options only). A rule that is there already (a repeated ADD) fails its
    line, `ip rule add` having no replace: then what is missing, if anything, is what fails the call."""
    commands = [_replace(route, ifname) for route in pod_plan.routes]
    commands += [iproute.replace_table_route(*route) for route in pod_plan.table_routes]
    try:
        for ipv6 in (False, True):
            commands += [iproute.add_rule(rule.address, rule.table, RULE_PREF) for rule in pod_plan.rules
                         if _is_ipv6(rule.address) == ipv6]
            runner.change_batch(commands, netns, ipv6, force=True)
            commands = []
    except CommandFailed as e:
        missing = problems(runner, pod_plan, netns, ifname)
        if missing:
            raise CommandFailed(e.msg, "; ".join([e.details, *missing])) from None


def remove(runner, pod_plan, netns, ifname):
    """Delete our routes and reply paths in the pod. A pod whose namespace is gone took them along, and so did
    one whose CNI_NETNS is no longer a network namespace (which, a FIFO for one, nsenter would hang on): nothing
    to do. What went before us (an interface deleted first, with its routes) is fine."""
    if (not netns or not any(pod_plan) or not runner.host.is_network_namespace(netns)
            or not runner.has_program("nsenter")):
        return
    if pod_plan.routes:
        found = routes.observe(runner, [route.dst for route in pod_plan.routes], netns=netns)
        for route in reversed(pod_plan.routes):
            if any(_is_ours(r, route.gateway, ifname) for r in found[route.dst]):
                runner.change(_delete(route, ifname), netns=netns)
    if pod_plan.rules or pod_plan.table_routes:
        try:
            _delete_reply_paths(runner, pod_plan, netns)
        except CommandFailed:  # something went meanwhile (every line ran): fail only for what is still there
            if any(_present(pod_plan, *_read(runner, pod_plan, netns))):
                raise


def problems(runner, pod_plan, netns, ifname):
    found = []
    if pod_plan.routes:
        seen = routes.observe(runner, [route.dst for route in pod_plan.routes], netns=netns)
        found += [f"no route to {route.dst}{f' via {route.gateway}' if route.gateway else ''} dev {ifname} in the pod"
                  for route in pod_plan.routes if not any(_is_ours(r, route.gateway, ifname) for r in seen[route.dst])]
    if pod_plan.rules or pod_plan.table_routes:
        rules, table, links = _read(runner, pod_plan, netns, iproute.show_addresses())
        wanted = _still_wanted(pod_plan, _addressed(links))
        rules_in, routes_in = _present(wanted, rules, table)
        found += [f"no rule from {rule.address} lookup {rule.table} in the pod" for rule in wanted.rules
                  if rule not in rules_in]
        found += [f"no route to {route.dst} dev {route.dev} in the pod's table {route.table}"
                  for route in wanted.table_routes if route not in routes_in]
    return found


def _still_wanted(pod_plan, addressed):
    """The reply paths of the plan that the pod's interfaces now (`addressed`: _addressed) still call for:
    another attachment's DEL takes its interface, with its addresses and routes (ours in its table too), and a
    pod left with one interface needs none."""
    if len(addressed) < 2:
        return pod_plan._replace(rules=[], table_routes=[])
    held = {a["local"] for _, addresses in addressed.values() for a in addresses}
    return pod_plan._replace(rules=[rule for rule in pod_plan.rules if rule.address in held],
                             table_routes=[route for route in pod_plan.table_routes if route.dev in addressed])


def _read(runner, pod_plan, netns, *more):
    """The pod's rules (of both families when the plan has IPv6 ones), its routes of every table, then the
    objects of the commands `more`: one read, and one more for IPv6 rules."""
    rules, table, *rest = runner.read_each([iproute.show_rules(), iproute.show_all_routes(), *more], netns=netns)
    if any(_is_ipv6(rule.address) for rule in pod_plan.rules):
        rules += runner.read([iproute.show_rules()], True, netns)
    return (rules, table, *rest)


def _present(pod_plan, rules, table):
    """(rules, table routes) of the plan that are among the pod's `rules` and `table` (_read)."""
    return ([rule for rule in pod_plan.rules if any(_is_rule(obj, rule) for obj in rules)],
            [route for route in pod_plan.table_routes if any(_is_table_route(obj, route) for obj in table)])


def _delete_reply_paths(runner, pod_plan, netns):
    """Delete the plan's rules and table routes that are in the pod: the rules first, then the tables."""
    rules, table_routes = _present(pod_plan, *_read(runner, pod_plan, netns))
    for ipv6 in (False, True):
        commands = [iproute.delete_rule(rule.address, rule.table, RULE_PREF) for rule in rules
                    if _is_ipv6(rule.address) == ipv6]
        if not ipv6:
            commands += [iproute.delete_table_route(*route) for route in reversed(table_routes)]
        runner.change_batch(commands, netns, ipv6, force=True)


def _is_rule(obj, rule):
    return (obj.get("priority") == RULE_PREF and obj.get("src") == rule.address
            and str(obj.get("table")) == str(rule.table))


def _is_table_route(obj, route):
    return (str(obj.get("table")) == str(route.table) and "dst" in obj
            and routes.prefix_of(obj["dst"], _is_ipv6(route.dst)) == route.dst and obj.get("gateway") == route.gateway
            and obj.get("dev") == route.dev and obj.get("protocol") == iproute.ROUTE_PROTO)


def _is_ipv6(address):
    return ":" in address


def _is_ipv6_route(obj):
    """Of a route object of `table all` (which names no family): only IPv6 routes have a router preference."""
    return "pref" in obj or _is_ipv6(obj["dst"]) or _is_ipv6(obj.get("gateway", ""))


def heal(runner, attachment, node, addresses, master):
    """Put back in a running pod what its ADD put there, for the node as it is now (`node`: node.Node;
    `addresses`: what the shim carries, node.Node.shim_addresses; `master`: its Link): the on-link routes to
    node addresses outside the pod's subnets and routeViaHost's routes, through the node address the shim
    carries now, and in a pod that ADD gave reply paths, those made again for the node and the pod as they are
    now; ours that point at an address the node gave up go. `route reconcile` calls it for every attachment
    that still owns its addresses.

    Only in the namespace ADD named, and only while it is that one: a path may name another namespace by now
    (a path reused after a runtime crashed, a reused /proc/PID/ns/net), so its identity must be the one recorded
    (host.SystemHost.identify_namespace) and the pod's interface must still carry the pod's addresses.
    Returns the attachment as the pod now has it (its pod_routes), unchanged when the interface lacks
    the pod's addresses or the record, of an older version, does not say where the pod is. PodUnreachable, with
    the reason, when the pod cannot be entered (not allowed, the path gone: its DEL or GC comes) or the path
    holds another namespace: a pass that could not look is not in shape."""
    netns, ifname = attachment.netns, attachment.ifname
    if not netns or not attachment.netns_id:
        return attachment
    try:
        found_id = runner.host.identify_namespace(netns, like=attachment.netns_id)
    except OSError as e:
        raise PodUnreachable("cannot_enter", f"cannot enter its network namespace {netns}",
                             e.strerror or str(e)) from None
    if found_id != attachment.netns_id:
        raise PodUnreachable("another_namespace", f"{netns} is another network namespace now ({found_id}; ADD recorded "
                             f"{attachment.netns_id}): not that pod any more")
    if not runner.has_program("nsenter"):
        raise PodUnreachable("no_nsenter", f"cannot enter its network namespace {netns}", "nsenter is not on PATH")
    try:
        [links] = runner.read_each([iproute.show_addresses()], netns=netns)  # reads all: an answer proves entry
    except CommandTimeout:
        raise
    except CommandFailed as e:
        raise PodUnreachable("cannot_enter", f"cannot enter its network namespace {netns}", e.details) from None
    pod_addresses = [f"{a['local']}/{a['prefixlen']}" for link in links if link.get("ifname") == ifname
                     for a in link.get("addr_info", ()) if "local" in a]
    if not set(routes.addresses(attachment.prefixes)) <= {a.split("/")[0] for a in pod_addresses}:
        return attachment  # the pod took them off its interface (or, with an identity of the old form, another pod)
    wanted = on_link(addresses, master, pod_addresses)
    wanted += via_host.plan([route.dst for route in attachment.via_host], addresses, master.name)
    had = attachment.pod_routes
    found = routes.observe(runner, list(dict.fromkeys(route.dst for route in [*wanted, *had])), netns=netns)
    for route in wanted:  # in order: an on-link route before the routes through its address
        if not any(_is_ours(r, route.gateway, ifname) for r in found[route.dst]):
            runner.change(_replace(route, ifname), netns=netns)
    for route in reversed(had):
        replaced = any(other.dst == route.dst for other in wanted)  # `replace` took it over
        if not replaced and any(_is_ours(r, route.gateway, ifname) for r in found[route.dst]):
            runner.change(_delete(route, ifname), netns=netns)
    healed = attachment._replace(pod_routes=wanted)
    if attachment.reply_rules or attachment.reply_routes:
        healed = _heal_reply_paths(runner, healed, node, addresses, plan(attachment))
    return healed


def _heal_reply_paths(runner, attachment, node, addresses, had):
    """The reply paths for the pod and the node as they are now (reply_paths, as ADD makes them): what is
    missing added, what the node or the pod no longer has removed first."""
    rules, table_routes, foreign = reply_paths(observe(runner, attachment.netns), attachment.ifname,
                                               plan(attachment).routes, node.links, addresses, attachment.shim)
    say_foreign(runner, foreign)
    stale = PodPlan((), [r for r in had.rules if r not in rules],
                    [r for r in had.table_routes if r not in table_routes])
    if stale.rules or stale.table_routes:
        _delete_reply_paths(runner, stale, attachment.netns)
    missing = problems(runner, PodPlan((), rules, table_routes), attachment.netns, attachment.ifname)
    if missing:
        install(runner, PodPlan((), rules, table_routes), attachment.netns, attachment.ifname)
    return attachment._replace(reply_rules=rules, reply_routes=table_routes)


def as_result(pod_routes, version):
    """The routes as a CNI result lists them; on-link ones carry their scope where the spec has it (1.1)."""
    on_link_scope = {"scope": LINK_SCOPE} if version == "1.1.0" else {}
    return [{"dst": route.dst, "gw": route.gateway} if route.gateway else {"dst": route.dst, **on_link_scope}
            for route in pod_routes]


def _replace(route, ifname):
    if route.gateway:
        return iproute.replace_gateway_route(route.dst, route.gateway, ifname)
    return iproute.replace_route(route.dst, ifname)


def _delete(route, ifname):
    if route.gateway:
        return iproute.delete_gateway_route(route.dst, route.gateway, ifname)
    return iproute.delete_route(route.dst, ifname)


def _is_ours(route, gateway, ifname):
    return (route.get("gateway") == gateway and route.get("dev") == ifname
            and route.get("protocol") == iproute.ROUTE_PROTO)
