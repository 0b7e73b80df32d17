"""routeViaHost: pod traffic to chosen CIDRs (ClusterIPs, node-local DNS, node addresses) goes through the node.

A macvlan pod sends such packets to the LAN's gateway, past the node's kube-proxy rules. With routeViaHost the
pod gets `<cidr> via <node address> dev <ifname>` (the node address is one the shim carries, so the pod
reaches it through the shim), and the node masquerades what came in through the shim and was DNATed, so that
replies from a LAN backend, or from another macvlan pod, come back through the node to be un-NATed.
"""
from . import iproute, nft, routes
from .errors import HostNotReady

FORWARDING = {4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}
PROGRAMS = ("nft", "nsenter")  # the masquerade rule; the routes inside the pod


def plan(cidrs, master):
    """[[cidr, gateway]]: each CIDR with the master's primary address of its family, which the shim carries."""
    planned = []
    for cidr in cidrs:
        ipv6 = iproute.family(cidr) == 6
        gateway = next((a.local for a in master.addresses if a.scope == "global" and (a.family == "inet6") == ipv6),
                       None)
        if gateway is None:
            raise HostNotReady(f"routeViaHost {cidr}: master {master.name} has no IPv{6 if ipv6 else 4} address",
                               "the pod's route must point at a node address")
        planned.append([cidr, gateway])
    return planned


def forwarding_off(runner, planned):
    """Sentences about the node's forwarding switches that routeViaHost needs and finds off."""
    found = []
    for family in sorted({iproute.family(cidr) for cidr, _ in planned}):
        key = FORWARDING[family]
        if runner.sysctl(key) != "1":
            found.append(f"routeViaHost needs IPv{family} forwarding, and {key.replace('/', '.')} is not 1")
    return found


def require_forwarding(runner, planned):
    found = forwarding_off(runner, planned)
    if found:
        raise HostNotReady("; ".join(found), "enable it (Kubernetes nodes have it on): this plugin never switches "
                                             "global sysctls")


def programs_missing(runner):
    """Sentences about the programs routeViaHost runs and the node lacks."""
    return [f"routeViaHost needs {program}, which is not on PATH" for program in PROGRAMS
            if not runner.has_program(program)]


def require_programs(runner):
    found = programs_missing(runner)
    if found:
        raise HostNotReady("; ".join(found), "install nftables and util-linux (see README, What a node needs)")


def ensure_masquerade(runner, shim):
    """Add the shim's rule (and the table and chain it needs), replacing a rule under its name that is not
    this one. Call with the store's nft lock held."""
    listing = _chain(runner)
    if nft.has_masquerade(listing, shim):
        return
    rules = nft.masquerade_rules(listing)
    if shim in rules:
        runner.change(nft.delete_rule(rules[shim]), program="nft")
    runner.change(nft.add_table(), program="nft")  # `add` of an existing table or chain is a no-op
    runner.change(nft.add_chain(), program="nft")
    runner.change(nft.add_masquerade(shim), program="nft")


def remove_masquerade(runner, shim):
    """Drop the shim's rule; drop the table once no rule is left. Never touches another table. Call with the
    store's nft lock held. Without nft on the node there is nothing it could do: it says so and goes on (a DEL
    must not fail for it)."""
    if not runner.has_program("nft"):
        runner.journal.comment(f"nft is not on PATH: the masquerade rule of {shim}, if any, stays")
        return
    rules = nft.masquerade_rules(_chain(runner))
    if shim in rules:
        runner.change(nft.delete_rule(rules[shim]), program="nft")
    if rules and set(rules) <= {shim}:
        runner.change(nft.delete_table(), program="nft")


def has_masquerade(runner, shim):
    return nft.has_masquerade(_chain(runner), shim)


def install_pod_routes(runner, planned, netns, ifname):
    for cidr, gateway in planned:
        runner.change(iproute.replace_gateway_route(cidr, gateway, ifname), netns=netns)


def remove_pod_routes(runner, planned, netns, ifname):
    """Delete our routes in the pod. A pod whose namespace is gone took them along, and so did one whose
    CNI_NETNS is no longer a network namespace (which, a FIFO for one, nsenter would hang on): nothing to do."""
    if not netns or not runner.host.is_network_namespace(netns) or not runner.has_program("nsenter"):
        return
    found = routes.observe(runner, [cidr for cidr, _ in planned], netns=netns)
    for cidr, gateway in planned:
        if any(_is_ours(r, gateway, ifname) for r in found[cidr]):
            runner.change(iproute.delete_gateway_route(cidr, gateway, ifname), netns=netns)


def pod_route_problems(runner, planned, netns, ifname):
    found = routes.observe(runner, [cidr for cidr, _ in planned], netns=netns)
    return [f"no route to {cidr} via {gateway} dev {ifname} in the pod" for cidr, gateway in planned
            if not any(_is_ours(r, gateway, ifname) for r in found[cidr])]


def as_result_routes(planned):
    return [{"dst": cidr, "gw": gateway} for cidr, gateway in planned]


def _is_ours(route, gateway, ifname):
    return (route.get("gateway") == gateway and route.get("dev") == ifname
            and route.get("protocol") == iproute.ROUTE_PROTO)


def _chain(runner):
    """`nft -j list chain` of our chain, or "" when the table or the chain is not there."""
    if not nft.has_table(runner.query(nft.list_tables(), "nft").out):
        return ""
    chain = runner.query(nft.list_chain(), "nft", ok=(0, 1))  # 1: the table is there without its chain
    return chain.out if chain.status == 0 else ""
