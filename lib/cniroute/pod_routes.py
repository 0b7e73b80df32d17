"""Routes the plugin puts inside the pod (entering its namespace with `nsenter --net=CNI_NETNS`).

A pod route is [destination, gateway]:
- [<node address>/32, None]: `dev <ifname> scope link`, to a node address outside the pod's subnets that the
  shim carries (README, "Node layouts"): the pod reaches the node on its own link, through the shim;
- [<cidr>, <node address>]: `via <node address> dev <ifname>`, routeViaHost's (via_host.py).
They are installed in that order (a gateway must be reachable before a route can use it), removed in reverse.
"""
import ipaddress

from . import iproute, routes, via_host

LINK_SCOPE = 253  # RT_SCOPE_LINK, as CNI 1.1 results give a route's scope


def on_link(addresses, master, pod_addresses):
    """[[host prefix, None]] for the node addresses the shim carries that the pod cannot reach on its own link
    otherwise: not the master's (with those, nothing changes from before), of a family the pod has, and
    outside every subnet of the pod (`pod_addresses`: "ip/len" of its interface)."""
    subnets = [ipaddress.ip_interface(a).network for a in pod_addresses]
    versions = {net.version for net in subnets}
    return [[iproute.host_prefix(a.local), None] for a in addresses
            if a not in master.addresses and a.ip.version in versions and not any(a.ip in net for net in subnets)]


def install(runner, pod_routes, netns, ifname):
    for dst, gateway in pod_routes:
        runner.change(_replace(dst, gateway, ifname), netns=netns)


def remove(runner, pod_routes, netns, ifname):
    """Delete our routes in the pod. A pod whose namespace is gone took them along, and so did one whose
    CNI_NETNS is no longer a network namespace (which, a FIFO for one, nsenter would hang on): nothing to do."""
    if not netns or not pod_routes or not runner.host.is_network_namespace(netns) or not runner.has_program("nsenter"):
        return
    found = routes.observe(runner, [dst for dst, _ in pod_routes], netns=netns)
    for dst, gateway in reversed(pod_routes):
        if any(_is_ours(r, gateway, ifname) for r in found[dst]):
            runner.change(_delete(dst, gateway, ifname), netns=netns)


def problems(runner, pod_routes, netns, ifname):
    if not pod_routes:
        return []
    found = routes.observe(runner, [dst for dst, _ in pod_routes], netns=netns)
    return [f"no route to {dst}{f' via {gateway}' if gateway else ''} dev {ifname} in the pod"
            for dst, gateway in pod_routes if not any(_is_ours(r, gateway, ifname) for r in found[dst])]


def heal(runner, attachment, addresses, master):
    """Put back in a running pod what its ADD put there, for the node as it is now (`addresses`: what the shim
    carries, node.Node.shim_addresses; `master`: its Link): the on-link routes to node addresses outside the
    pod's subnets and routeViaHost's routes, through the node address the shim carries now; ours that point at
    an address the node gave up go. `route reconcile` calls it for every attachment that still owns its
    addresses; what else ADD puts in the pod belongs here too.

    Only in the namespace ADD named, and only while it is that one: a path may name another namespace by now
    (a reused /proc/PID/ns/net, a bind mount made again), so its identity must be the one recorded and the
    pod's interface must still carry the pod's addresses. Returns the attachment as the pod now has it (its
    on_link and via_host), or unchanged when the pod cannot be reached (records of older versions, a pod whose
    namespace has gone: its DEL or GC comes)."""
    netns, ifname = attachment.netns, attachment.ifname
    if not netns or runner.host.namespace_id(netns) != attachment.netns_id or not runner.has_program("nsenter"):
        return attachment
    pod_addresses = [f"{a['local']}/{a['prefixlen']}" for link in runner.read([iproute.show_link(ifname)], netns=netns)
                     for a in link.get("addr_info", ()) if "local" in a]
    if not set(routes.addresses(attachment.prefixes)) <= {a.split("/")[0] for a in pod_addresses}:
        return attachment  # another pod's namespace now, or not the interface ADD routed
    wanted = on_link(addresses, master, pod_addresses)
    wanted += via_host.plan([cidr for cidr, _ in attachment.via_host], addresses, master.name)
    had = [[dst, None] for dst in attachment.on_link] + [list(pair) for pair in attachment.via_host]
    found = routes.observe(runner, list(dict.fromkeys(dst for dst, _ in wanted + had)), netns=netns)
    for dst, gateway in wanted:  # in order: an on-link route before the routes through its address
        if not any(_is_ours(r, gateway, ifname) for r in found[dst]):
            runner.change(_replace(dst, gateway, ifname), netns=netns)
    for dst, gateway in reversed(had):
        replaced = any(d == dst for d, _ in wanted)  # `replace` took it over
        if [dst, gateway] not in wanted and not replaced and any(_is_ours(r, gateway, ifname) for r in found[dst]):
            runner.change(_delete(dst, gateway, ifname), netns=netns)
    return attachment._replace(on_link=[dst for dst, gateway in wanted if gateway is None],
                               via_host=[pair for pair in wanted if pair[1] is not None])


def as_result(pod_routes, version):
    """The routes as a CNI result lists them; on-link ones carry their scope where the spec has it (1.1)."""
    on_link_scope = {"scope": LINK_SCOPE} if version == "1.1.0" else {}
    return [{"dst": dst, "gw": gateway} if gateway else {"dst": dst, **on_link_scope} for dst, gateway in pod_routes]


def _replace(dst, gateway, ifname):
    return iproute.replace_gateway_route(dst, gateway, ifname) if gateway else iproute.replace_route(dst, ifname)


def _delete(dst, gateway, ifname):
    return iproute.delete_gateway_route(dst, gateway, ifname) if gateway else iproute.delete_route(dst, ifname)


def _is_ours(route, gateway, ifname):
    return (route.get("gateway") == gateway and route.get("dev") == ifname
            and route.get("protocol") == iproute.ROUTE_PROTO)
