"""routeViaHost: pod traffic to chosen CIDRs (ClusterIPs, node-local DNS, node addresses) goes through the node.

A macvlan pod sends such packets to the LAN's gateway, past the node's kube-proxy rules. With routeViaHost the
pod gets `<cidr> via <node address> dev <ifname>` (the node address is one the shim carries, so the pod
reaches it through the shim), and the node masquerades what came in through the shim and was translated (DNAT
or IPVS: nft.py), so that replies from a LAN backend, or from another macvlan pod, come back through the node
to be un-NATed.
"""
from . import iproute, lock, nft, routes
from .errors import CommandFailed, HostNotReady

FORWARDING = {4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}


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


def ensure_masquerade(runner, shim, lock_path, timeout):
    """The shim's two rules (nft.py), replacing the single `ct status dnat` rule of an older version."""
    with lock.held(lock_path, timeout):  # the table is shared by every shim
        rules = _rules(runner)
        wanted = [nft.rule_comment(shim, proto) for proto in nft.PROTOS]
        if all(comment in rules for comment in wanted) and shim not in rules:
            return
        runner.change(nft.add_table(), program="nft")  # `add` of an existing table, chain or set is a no-op
        runner.change(nft.add_chain(), program="nft")
        for proto in nft.PROTOS:
            runner.change(nft.add_set(proto), program="nft")
        if shim in rules:  # an older version's rule: it misses what IPVS translates
            runner.change(nft.delete_rule(rules[shim]), program="nft")
        for proto, comment in zip(nft.PROTOS, wanted):
            if comment not in rules:
                runner.change(nft.add_masquerade(shim, proto), program="nft")


def remove_masquerade(runner, shim, lock_path, timeout):
    """Drop the shim's rules; drop the table once no rule is left. Never touches another table."""
    with lock.held(lock_path, timeout):
        rules = _rules(runner)
        mine = {comment: handle for comment, handle in rules.items() if comment.split(" ")[0] == shim}
        for handle in mine.values():
            runner.change(nft.delete_rule(handle), program="nft")
        if rules and len(mine) == len(rules):
            runner.change(nft.delete_table(), program="nft")


def has_masquerade(runner, shim):
    rules = _rules(runner)
    return all(nft.rule_comment(shim, proto) in rules for proto in nft.PROTOS)


def install_pod_routes(runner, planned, netns, ifname):
    for cidr, gateway in planned:
        runner.change(iproute.replace_gateway_route(cidr, gateway, ifname), netns=netns)


def remove_pod_routes(runner, planned, netns, ifname):
    """Delete our routes in the pod. A pod whose namespace is gone took them along: nsenter then fails to
    enter it (exit 1, like a read of nothing), no route is found, and there is nothing to say."""
    if not netns:
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


def _rules(runner):
    status, out = runner.query(nft.list_tables(), "nft")
    if status != 0:
        raise CommandFailed("nft list tables failed", "is nftables installed and the nf_tables module loaded?")
    if not nft.has_table(out):
        return {}
    status, out = runner.query(nft.list_chain(), "nft")
    return nft.masquerade_rules(out) if status == 0 else {}
