"""Pure builders of nft(8) arguments (the words after `nft`) for the plugin's own table, and reading it
back from `nft -j`.

The plugin owns exactly one table, `inet cni_route`, and never touches another. Its postrouting chain has
two rules per shim (IPv4 and IPv6), commented "<shim> ip" and "<shim> ip6":
    iifname "<shim>" add @equal4 { ct reply ip saddr . ct reply ip saddr }
        ct original ip daddr . ct reply ip saddr != @equal4 masquerade
so that what came in through the shim and was translated to another destination, by kube-proxy's DNAT
(iptables or nftables mode) or by IPVS, leaves with a node address, and the reply comes back through the
node, which un-NATs it for the pod. Translated means: conntrack's reply comes from another address than the
original destination. IPVS does not set conntrack's DNAT status bit (it only alters the reply tuple,
net/netfilter/ipvs/ip_vs_nfct.c), so `ct status dnat` would miss it; and nft compares an expression only with
constants or sets, never with another expression. Hence the set: the rule first adds the pair
(reply source . reply source), then looks up (original destination . reply source), which is in the set
exactly when the two addresses are equal. The set only ever holds such equal pairs, which expire after a
second (they are needed only for the lookup right after).
"""
import json

TABLE = ("inet", "cni_route")
CHAIN = "postrouting"
PROTOS = ("ip", "ip6")
SETS = {"ip": ("equal4", "ipv4_addr"), "ip6": ("equal6", "ipv6_addr")}  # proto: (set name, address type)
SET_TIMEOUT = "1s"
SET_SIZE = 65536  # distinct reply sources within a second; when full, new flows go unmasqueraded until expiry


def list_tables():
    return ["-j", "list", "tables"]


def list_chain(family=TABLE[0], table=TABLE[1], chain=CHAIN):
    """Our chain, or (route doctor) another table's."""
    return ["-j", "list", "chain", family, table, chain]


def add_table():
    return ["add", "table", *TABLE]


def add_chain():
    return ["add", "chain", *TABLE, CHAIN, "{ type nat hook postrouting priority srcnat ; policy accept ; }"]


def add_set(proto):
    name, kind = SETS[proto]
    return ["add", "set", *TABLE, name,
            f"{{ type {kind} . {kind} ; flags dynamic,timeout ; timeout {SET_TIMEOUT} ; size {SET_SIZE} ; }}"]


def add_masquerade(shim, proto):
    """The shim's rule for `proto` ("ip" or "ip6"): see the module's docstring."""
    name = "@" + SETS[proto][0]
    reply_source = ["ct", "reply", proto, "saddr"]
    return ["add", "rule", *TABLE, CHAIN, "iifname", f'"{shim}"',
            "add", name, "{", *reply_source, ".", *reply_source, "}",
            "ct", "original", proto, "daddr", ".", *reply_source, "!=", name,
            "masquerade", "comment", f'"{rule_comment(shim, proto)}"']


def rule_comment(shim, proto):
    return f"{shim} {proto}"


def delete_rule(handle):
    return ["delete", "rule", *TABLE, CHAIN, "handle", str(handle)]


def delete_table():
    return ["delete", "table", *TABLE]


def has_table(output):
    return tuple(TABLE) in tables(output)


def tables(output):
    """[(family, name)] of `nft -j list tables`."""
    return [(item["table"].get("family"), item["table"].get("name")) for item in _items(output) if "table" in item]


def masquerade_rules(output):
    """{comment: rule handle} of the rules in our chain (comments: rule_comment; a bare shim name is the
    `ct status dnat` rule of an older version)."""
    return {item["rule"]["comment"]: item["rule"]["handle"] for item in _items(output)
            if "rule" in item and "comment" in item["rule"]}


def has_masquerade(output, shim):
    """Whether our chain has the shim's rules as add_masquerade makes them, not merely rules with their comments."""
    rules = {item["rule"].get("comment"): item["rule"].get("expr") for item in _items(output) if "rule" in item}
    return all(rules.get(rule_comment(shim, proto)) == masquerade_expr(shim, proto) for proto in PROTOS)


def masquerade_expr(shim, proto):
    """add_masquerade's rule as `nft -j` lists it."""
    def reply_source():
        return {"ct": {"key": f"{proto} saddr", "dir": "reply"}}

    equal = "@" + SETS[proto][0]
    return [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": shim}},
            {"set": {"op": "add", "elem": {"concat": [reply_source(), reply_source()]}, "set": equal}},
            {"match": {"op": "!=", "left": {"concat": [{"ct": {"key": f"{proto} daddr", "dir": "original"}},
                                                       reply_source()]}, "right": equal}},
            {"masquerade": None}]


def _items(output):
    try:
        return json.loads(output).get("nftables", [])
    except (ValueError, AttributeError):
        return []
