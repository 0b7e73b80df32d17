"""Routes the plugin puts inside the pod (entering its namespace with `nsenter --net=CNI_NETNS`).

A pod route (records.PodRoute) is a destination and a gateway:
- <node address>/32 without one: `dev <ifname> scope link`, to a node address outside the pod's subnets that
  the shim carries (docs/node-layouts.md): the pod reaches the node on its own link, through the shim;
- <cidr> via <node address>: `via <node address> dev <ifname>`, routeViaHost's (via_host.py).
They are installed in that order (a gateway must be reachable before a route can use it), removed in reverse.

In a pod with more interfaces than ours (Multus), a reply path for each: reply_paths.py. What route owns in a
pod is bounded by the node's addresses, and so is what it reads there: its rules (by priority), its tables and
its own main routes (by protocol: the kernel filters), never the pod's other routes.
"""
import ipaddress
from collections import namedtuple

from . import iproute, reply_paths, routes, via_host
from .errors import CommandFailed, CommandTimeout, PodUnreachable, ReadTooLarge
from .records import PodRoute
from .reply_paths import READ_LIMIT, RULE_PREF, Found, made_by_route
from .reply_paths import is_ipv6 as _is_ipv6

LINK_SCOPE = 253  # RT_SCOPE_LINK, as CNI 1.1 results give a route's scope
IPV6_DEFAULT_METRIC = 1024  # what the kernel gives an IPv6 route added without one (IPv4: 0, not shown)


class PodPlan(namedtuple("PodPlan", "routes rules table_routes", defaults=((), ()))):
    """Everything the plugin puts in the pod: `routes` [PodRoute] in main on our interface (see above), the
    reply paths' `rules` [ReplyRule] and `table_routes` [TableRoute]."""

    __slots__ = ()


def plan(attachment):
    """The pod-side changes of an attachment, from its record alone (ADD, DEL, CHECK and reconcile use this)."""
    return PodPlan(attachment.pod_routes, attachment.reply_rules, attachment.reply_routes)


def on_link(addresses, master, pod_addresses):
    """[PodRoute] on-link to the node addresses the shim carries that the pod cannot reach on its own link
    otherwise: not the master's (with those, nothing changes from before), of a family the pod has, and
    outside every subnet of the pod (`pod_addresses`: "ip/len" of its interface)."""
    subnets = [ipaddress.ip_interface(a).network for a in pod_addresses]
    versions = {net.version for net in subnets}
    return [PodRoute(iproute.host_prefix(a.local), None) for a in addresses
            if a not in master.addresses and a.ip.version in versions and not any(a.ip in net for net in subnets)]


def node_view(carried, master, node_links, shim):
    """What of the node the pod side is made from, as the record keeps it (Attachment.node_view): the addresses
    the shim carries, the master's, and the node's other global addresses. A pod whose record has the node's
    view of now needs nothing from a pass: reconcile enters only the pods whose view changed."""
    others = {a.cidr for link in node_links.values() if link.name not in (shim, master.name)
              for a in link.global_addresses}
    return sorted({f"carried {a.cidr}" for a in carried} | {f"master {a.cidr}" for a in master.global_addresses}
                  | {f"node {cidr}" for cidr in others})


def install(runner, pod_plan, netns, ifname):
    """Put the plan in the pod: every route and the IPv4 rules in one ip call, the IPv6 rules in another (ip
    takes a rule's family from its options only). A rule that is there already (a repeated ADD) fails its
    line, `ip rule add` having no replace: then what is missing, if anything, is what fails the call."""
    commands = [_replace(dst, gateway, ifname) for dst, gateway in pod_plan.routes]
    commands += [iproute.replace_table_route(*route) for route in pod_plan.table_routes]
    try:
        for ipv6 in (False, True):
            commands += [iproute.add_rule(address, table, RULE_PREF) for address, table in pod_plan.rules
                         if _is_ipv6(address) == ipv6]
            runner.change_batch(commands, netns, ipv6, force=True)
            commands = []
    except CommandFailed as e:
        missing = _differences(pod_plan, ifname, _read(runner, pod_plan, netns), extras=False)
        if missing:
            raise CommandFailed(e.msg, "; ".join([e.details, *missing])) from None


def remove(runner, pod_plan, netns, ifname):
    """Delete what is route's in the pod, as it is now: our main routes to the recorded destinations on our
    interface, whatever the pod changed of them, every route of the recorded tables and every rule at RULE_PREF
    that looks one up. A pod whose namespace is gone took them along, and so did one whose CNI_NETNS is no
    longer a network namespace (which, a FIFO for one, nsenter would hang on): nothing to do. What went before
    us (an interface deleted first, with its routes) is fine."""
    if (not netns or not any(pod_plan) or not runner.host.is_network_namespace(netns)
            or not runner.has_program("nsenter")):
        return
    seen = _read(runner, pod_plan, netns)
    if seen is None:  # more than route reads: delete what was recorded, as it was recorded
        _delete_blind(runner, pod_plan, netns, ifname)
        return
    try:
        for ipv6, commands in _owned(pod_plan, ifname, seen).items():
            runner.change_batch(commands, netns, ipv6, force=True)
    except CommandFailed:  # something went meanwhile (every line ran): fail only for what is still there
        if _owned(pod_plan, ifname, _read(runner, pod_plan, netns) or {}):
            raise


def _delete_blind(runner, pod_plan, netns, ifname):
    """Delete the plan's rules, tables and main routes by what was recorded, without reading the pod (it holds
    more than route reads): what is not there fails its line, and is what DEL wanted."""
    tables = sorted({rule.table for rule in pod_plan.rules} | {route.table for route in pod_plan.table_routes})
    for ipv6 in (False, True):
        commands = [iproute.delete_rule(rule.address, rule.table, RULE_PREF) for rule in pod_plan.rules
                    if _is_ipv6(rule.address) == ipv6]
        commands += [iproute.flush_table(table) for table in tables]
        commands += [] if ipv6 else [_delete(dst, gateway, ifname) for dst, gateway in reversed(pod_plan.routes)]
        try:
            runner.change_batch(commands, netns, ipv6, force=True)
        except CommandFailed:
            runner.journal.comment("what failed was not there: fine")


def problems(runner, pod_plan, netns, ifname):
    """What differs in the pod from the plan, as sentences (_differences): of its reply paths, those the pod's
    interfaces still call for (_still_wanted)."""
    if pod_plan.rules or pod_plan.table_routes:
        pod_plan = reply_paths.still_wanted(pod_plan, reply_paths.addressed(reply_paths.observe(runner, netns)))
    return _differences(pod_plan, ifname, _read(runner, pod_plan, netns))


def _too_much():
    return (f"the pod holds more than {READ_LIMIT} bytes of rules at {RULE_PREF}, of route's tables or of routes of "
            f"protocol {iproute.ROUTE_PROTO} in main: route did not put them there")


def _differences(pod_plan, ifname, seen, extras=True):
    """What differs in the pod (`seen`: _read) from the plan: what is missing or what the pod has instead (every
    field that makes a route or a rule counts: table, destination, gateway, device, metric, scope, protocol,
    type), and (`extras`) what route's tables hold that the plan does not."""
    if seen is None:
        return [_too_much()]
    found = []
    main, tables = {}, {}
    for ipv6, family in seen.items():
        for obj in family.main:
            main.setdefault(routes.prefix_of(obj.get("dst", ""), ipv6), []).append(obj)
        for table, objs in family.tables.items():
            for obj in objs:
                tables.setdefault((table, routes.prefix_of(obj.get("dst", ""), ipv6)), []).append(obj)
    for dst, gateway in pod_plan.routes:
        wanted = _main_route(dst, gateway, ifname)
        have = main.get(dst, [])
        if not any(_same_route(obj, wanted) for obj in have):
            found.append(_differs(f"route to {dst}{f' via {gateway}' if gateway else ''} dev {ifname}", "the pod",
                                  wanted, have))
    wanted_in = {}
    for route in pod_plan.table_routes:
        wanted = wanted_in.setdefault((route.table, route.dst), [])
        wanted.append(_table_route(route))
        have = tables.get((route.table, route.dst), [])
        if not any(_same_route(obj, wanted[-1]) for obj in have):
            found.append(_differs(f"route to {route.dst} dev {route.dev}", f"the pod's table {route.table}",
                                  wanted[-1], have))
    for (table, dst), objs in sorted(tables.items()) if extras else ():
        wanted = wanted_in.get((table, dst), [])
        extra = [obj for obj in objs if made_by_route(obj) and not any(_same_route(obj, w) for w in wanted)]
        if wanted and len(extra) == len(objs):
            continue  # said above: what the pod has instead
        found += [f"the pod's table {table} has `{_describe(obj)}`, which route did not put there" for obj in extra]
    rules = [obj for family in seen.values() for obj in family.rules]
    found += [f"no rule from {address} lookup {table} in the pod" for address, table in pod_plan.rules
              if not any(_is_rule(obj, address, table) for obj in rules)]
    return found


def _read(runner, pod_plan, netns):
    """{ipv6: Found} of the families the plan has anything of: one ip call each, of what is route's alone (the
    kernel filters by protocol and table, ip the rules by priority), of at most READ_LIMIT bytes. None when the
    pod holds more of it than that (a pod that filled route's table): it is not read whole."""
    tables = sorted({rule.table for rule in pod_plan.rules} | {route.table for route in pod_plan.table_routes})
    found = {}
    for ipv6 in (False, True):
        if not (any(_is_ipv6(dst) == ipv6 for dst, _ in pod_plan.routes) or tables):
            continue
        try:
            answers = runner.read_each([iproute.show_own_routes(), *(iproute.show_table(t) for t in tables),
                                        *([iproute.show_rules_at(RULE_PREF)] if tables else [])], ipv6, netns,
                                       READ_LIMIT)
        except ReadTooLarge:
            return None
        found[ipv6] = Found(answers[0], dict(zip(tables, answers[1:])), answers[len(tables) + 1] if tables else [])
    return found


def _owned(pod_plan, ifname, seen, keep=None):
    """{ipv6: [argv]} that delete what is route's among what _read saw, in order: the rules that look up a table
    of the plan, route's routes in those tables (flushed by protocol: whatever of it is there, as the pod may have
    changed it; a route that is not route's stays), ours in
    main to a destination of the plan on our interface (by destination and gateway: whatever its metric or scope).
    What `keep` (a PodPlan) wants and is there as it wants it stays: a table, when it holds that and nothing else."""
    tables = {rule.table for rule in pod_plan.rules} | {route.table for route in pod_plan.table_routes}
    destinations = {dst for dst, _ in pod_plan.routes}
    keep = keep or PodPlan(())
    kept_main = [_main_route(dst, gateway, ifname) for dst, gateway in keep.routes]
    found = {}
    for ipv6, family in seen.items():
        commands = [iproute.delete_rule(_source(obj), obj["table"], RULE_PREF) for obj in family.rules
                    if _number(obj.get("table")) in tables and obj.get("src", "all") != "all"
                    and not any(_is_rule(obj, address, table) for address, table in keep.rules)]
        for table, objs in family.tables.items():
            wanted = [_table_route(route) for route in keep.table_routes
                      if route.table == table and _is_ipv6(route.dst) == ipv6]
            ours = [obj for obj in objs if made_by_route(obj)]  # what is not, route leaves (say_foreign)
            if ours and not _exactly(ours, wanted):
                commands.append(iproute.flush_table(table))
        if commands:
            found[ipv6] = commands
    for ipv6, family in seen.items():  # of either family in the batch without -6, as ADD puts them (ip takes theirs)
        for obj in reversed(family.main):
            dst = routes.prefix_of(obj.get("dst", ""), ipv6)
            if obj.get("dev") == ifname and dst in destinations and not any(_same_route(obj, w) for w in kept_main):
                found.setdefault(False, []).append(_delete(dst, obj.get("gateway"), ifname))
    return dict(sorted(found.items()))


def _exactly(objs, wanted):
    """Whether the route objects `objs` are the routes `wanted` (_wanted), no more, no fewer."""
    return (len(objs) == len(wanted) and all(any(_same_route(obj, w) for w in wanted) for obj in objs)
            and all(any(_same_route(obj, w) for obj in objs) for w in wanted))


def _source(obj):
    """The `from` of a rule object."""
    return obj["src"] + (f"/{obj['srclen']}" if "srclen" in obj else "")


def _number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_rule(obj, address, table):
    """Whether a rule object of show_rules_at is `from address lookup table` and nothing more (no other selector,
    no other action: ip names each it has)."""
    return (obj.get("priority") == RULE_PREF and obj.get("src") == address and _number(obj.get("table")) == table
            and not set(obj) - {"priority", "src", "table", "protocol", "flags"})


def _main_route(dst, gateway, ifname):
    return _wanted(dst, gateway, ifname, False, None)


def _table_route(route):
    return _wanted(route.dst, route.gateway, route.dev, route.onlink, route.metric)


def _wanted(dst, gateway, dev, onlink, metric):
    """A route as route puts it, as ip -json shows it once the kernel has it (the fields _same_route compares)."""
    ipv6 = _is_ipv6(dst)
    return {"dst": dst, "gateway": gateway, "dev": dev, "onlink": onlink,
            "metric": metric if metric is not None else (IPV6_DEFAULT_METRIC if ipv6 else 0),
            "scope": "global" if gateway or ipv6 else "link", "type": "unicast"}


def _same_route(obj, wanted):
    """Whether a route object of a read filtered by protocol (or table) is `wanted` (_wanted): every field that
    tells two routes apart, so that a route the pod swapped for another metric or scope is not taken for ours."""
    ipv6 = _is_ipv6(wanted["dst"])
    return (routes.prefix_of(obj.get("dst", ""), ipv6) == wanted["dst"] and obj.get("gateway") == wanted["gateway"]
            and obj.get("dev") == wanted["dev"] and ("onlink" in obj.get("flags", ())) == wanted["onlink"]
            and obj.get("metric", 0) == wanted["metric"] and "nexthops" not in obj
            and obj.get("scope", "global") == wanted["scope"] and obj.get("type", "unicast") == wanted["type"]
            and made_by_route(obj))


def _differs(what, where, wanted, have):
    if not have:
        return f"no {what} in {where}"
    return f"{what} in {where} is `{'`, `'.join(_describe(obj) for obj in have)}`, not `{_describe(wanted)}`"


def _describe(obj):
    """A route object (of ip -json, or _wanted) as ip would print it: enough to tell it from another."""
    words = [obj.get("dst") or "?"]
    if obj.get("type", "unicast") != "unicast":
        words.insert(0, obj["type"])
    if obj.get("gateway"):
        words += ["via", obj["gateway"]]
    words += ["dev", obj.get("dev") or "?"]
    if obj.get("onlink") is True or "onlink" in obj.get("flags", ()):
        words.append("onlink")
    if obj.get("metric"):
        words += ["metric", str(obj["metric"])]
    if obj.get("protocol", iproute.ROUTE_PROTO) != iproute.ROUTE_PROTO:
        words += ["proto", obj["protocol"]]
    return " ".join(words + ["scope", obj.get("scope", "global")])


def still_there(runner, attachment):
    """Whether the pod's namespace is where ADD recorded it, and can be entered as far as can be told without
    entering it (nsfs answers without a process): PodUnreachable, with the reason, when it cannot be; False when
    the record, of an older version, does not say where the pod is."""
    netns = attachment.netns
    if not netns or not attachment.netns_id:
        return False
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
    return True


def heal(runner, attachment, node, addresses, master):
    """Put back in a running pod what its ADD put there, for the node as it is now (`node`: node.Node;
    `addresses`: what the shim carries, node.Node.shim_addresses; `master`: its Link): the on-link routes to
    node addresses outside the pod's subnets and routeViaHost's routes, through the node address the shim
    carries now, and in a pod that ADD gave reply paths, those made again for the node and the pod as they are
    now; what of route's the node or the pod no longer calls for goes. `route reconcile` calls it for every
    attachment that owns its addresses and was made for another node than the node of now (node_view).

    Only in the namespace ADD named, and only while it is that one: a path may name another namespace by now
    (a path reused after a runtime crashed, a reused /proc/PID/ns/net), so its identity must be the one recorded
    (host.SystemHost.identify_namespace) and the pod's interface must still carry the pod's addresses.
    Returns the attachment as the pod now has it, unchanged when the interface lacks the pod's addresses or
    the record, of an older version, does not say where the pod is. PodUnreachable, with the reason, when the
    pod cannot be entered (not allowed, the path gone: its DEL or GC comes) or the path holds another
    namespace: a pass that could not look is not in shape."""
    netns, ifname = attachment.netns, attachment.ifname
    if not still_there(runner, attachment):
        return attachment
    try:  # reads all (an answer proves entry), at most READ_LIMIT bytes of it
        [links] = runner.read_each([iproute.show_addresses()], netns=netns, limit=READ_LIMIT)
    except (CommandTimeout, ReadTooLarge):
        raise
    except CommandFailed as e:
        raise PodUnreachable("cannot_enter", f"cannot enter its network namespace {netns}", e.details) from None
    pod_addresses = [f"{a['local']}/{a['prefixlen']}" for link in links if link.get("ifname") == ifname
                     for a in link.get("addr_info", ()) if "local" in a]
    if not set(routes.addresses(attachment.prefixes)) <= {a.split("/")[0] for a in pod_addresses}:
        return attachment  # the pod took them off its interface (or, with an identity of the old form, another pod)
    wanted = on_link(addresses, master, pod_addresses)
    wanted += via_host.plan([route.dst for route in attachment.via_host], addresses, master.name)
    rules, table_routes = [], []
    if attachment.reply_rules or attachment.reply_routes:
        rules, table_routes = reply_paths.paths(runner, netns, links, ifname, node.links, addresses, attachment.shim)
    had = plan(attachment)
    both = PodPlan(had.routes + wanted, had.rules + rules, had.table_routes + table_routes)
    seen = _read(runner, both, netns)  # what of route's the pod has, once
    foreign = reply_paths.foreign(table_routes, seen)
    reply_paths.say_foreign(runner, foreign)
    table_routes = [route for route in table_routes if route not in foreign]
    now = PodPlan(wanted, rules, table_routes)
    if seen is None:  # more than route reads: what was and will be route's goes, then the plan of now comes
        _delete_blind(runner, both, netns, ifname)
        install(runner, now, netns, ifname)
    else:
        stale = _owned(both, ifname, seen, keep=now)
        for ipv6, commands in stale.items():  # first: an old route to a destination of now would stay in the way
            runner.change_batch(commands, netns, ipv6, force=True)
        if stale or _differences(now, ifname, seen):
            install(runner, now, netns, ifname)
    return attachment._replace(pod_routes=wanted, reply_rules=rules, reply_routes=table_routes,
                               node_view=node_view(addresses, master, node.links, attachment.shim))


def as_result(pod_routes, version):
    """The routes as a CNI result lists them; on-link ones carry their scope where the spec has it (1.1)."""
    on_link_scope = {"scope": LINK_SCOPE} if version == "1.1.0" else {}
    return [{"dst": dst, "gw": gateway} if gateway else {"dst": dst, **on_link_scope} for dst, gateway in pod_routes]


def _replace(dst, gateway, ifname):
    return iproute.replace_gateway_route(dst, gateway, ifname) if gateway else iproute.replace_route(dst, ifname)


def _delete(dst, gateway, ifname):
    return iproute.delete_gateway_route(dst, gateway, ifname) if gateway else iproute.delete_route(dst, ifname)
