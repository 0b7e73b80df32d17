"""routeViaHost: pod traffic to chosen CIDRs (ClusterIPs, node-local DNS, node addresses) goes through the node.

A macvlan pod sends such packets to the LAN's gateway, past the node's kube-proxy rules. With routeViaHost the
pod gets `<cidr> via <node address> dev <ifname>` (pod_routes.py; the node address is one the shim carries,
so the pod reaches it through the shim), and the node masquerades what came in through the shim and was
translated (DNAT or IPVS: nft.py), so that replies from a LAN backend, or from another macvlan pod, come back
through the node to be un-NATed.
"""
from . import iproute, nft
from .errors import HostNotReady
from .records import PodRoute

FORWARDING = {4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}
PROGRAMS = ("nft", "nsenter")  # the masquerade rule; the routes inside the pod


def plan(cidrs, addresses, master_name):
    """[PodRoute]: each CIDR through the first node address of its family that the shim carries
    (`addresses`, node.Node.shim_addresses: the master's primary address when it has one)."""
    planned = []
    for cidr in cidrs:
        ipv6 = iproute.family(cidr) == 6
        gateway = next((a.local for a in addresses if (a.family == "inet6") == ipv6), None)
        if gateway is None:
            raise HostNotReady(f"routeViaHost {cidr}: the node has no IPv{6 if ipv6 else 4} address for the shim "
                               f"to carry (none on master {master_name}, on the device of the default route or "
                               "in nodeAddresses)", "the pod's route must point at a node address")
        planned.append(PodRoute(cidr, gateway))
    return planned


def forwarding_off(runner, planned):
    """Sentences about the node's forwarding switches that routeViaHost needs and finds off."""
    found = []
    for family in sorted({iproute.family(route.dst) for route in planned}):
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
        raise HostNotReady("; ".join(found), "install nftables and util-linux (see docs/install.md#what-a-node-needs)")


def ensure_masquerade(runner, shim):
    """The shim's two rules (nft.py), replacing a rule under their names that is not one of them, or the
    single `ct status dnat` rule of an older version. Call with the store's nft lock held."""
    listing = _chain(runner)
    if nft.has_masquerade(listing, shim):
        return
    rules = nft.masquerade_rules(listing)
    for comment in (shim, *(nft.rule_comment(shim, proto) for proto in nft.PROTOS)):
        if comment in rules:
            runner.change(nft.delete_rule(rules[comment]), program="nft")
    runner.change(nft.add_table(), program="nft")  # `add` of an existing table, chain or set is a no-op
    runner.change(nft.add_chain(), program="nft")
    for proto in nft.PROTOS:
        runner.change(nft.add_set(proto), program="nft")
    for proto in nft.PROTOS:
        runner.change(nft.add_masquerade(shim, proto), program="nft")


def remove_masquerade(runner, shim):
    """Drop the shim's rules; drop the table once no rule is left. Never touches another table. Call with the
    store's nft lock held. Without nft on the node there is nothing it could do: it says so and goes on (a DEL
    must not fail for it)."""
    if not runner.has_program("nft"):
        runner.journal.comment(f"nft is not on PATH: the masquerade rules of {shim}, if any, stay")
        return
    rules = nft.masquerade_rules(_chain(runner))
    mine = {comment: handle for comment, handle in rules.items() if comment.split(" ")[0] == shim}
    for handle in mine.values():
        runner.change(nft.delete_rule(handle), program="nft")
    if rules and len(mine) == len(rules):
        runner.change(nft.delete_table(), program="nft")


def has_masquerade(runner, shim):
    return nft.has_masquerade(_chain(runner), shim)


def _chain(runner):
    """`nft -j list chain` of our chain, or "" when the table or the chain is not there."""
    if not nft.has_table(runner.query(nft.list_tables(), "nft").out):
        return ""
    chain = runner.query(nft.list_chain(), "nft", ok=(0, 1))  # 1: the table is there without its chain
    return chain.out if chain.status == 0 else ""
