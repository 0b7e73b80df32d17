"""Pure builders of nft(8) arguments (the words after `nft`) for the plugin's own table, and reading it
back from `nft -j`.

The plugin owns exactly one table, `inet cni_route`, and never touches another. Its postrouting chain has
one rule per shim, commented with the shim's name:
    iifname "<shim>" ct status dnat masquerade
so that what came in through the shim and was DNATed by kube-proxy (a ClusterIP) leaves with a node
address, and the reply comes back through the node, which un-NATs it for the pod.
"""
import json

TABLE = ("inet", "cni_route")
CHAIN = "postrouting"


def list_tables():
    return ["-j", "list", "tables"]


def list_chain(family=TABLE[0], table=TABLE[1], chain=CHAIN):
    """Our chain, or (route doctor) another table's."""
    return ["-j", "list", "chain", family, table, chain]


def add_table():
    return ["add", "table", *TABLE]


def add_chain():
    return ["add", "chain", *TABLE, CHAIN, "{ type nat hook postrouting priority srcnat ; policy accept ; }"]


def add_masquerade(shim):
    return ["add", "rule", *TABLE, CHAIN, "iifname", f'"{shim}"', "ct", "status", "dnat", "masquerade",
            "comment", f'"{shim}"']


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
    """{shim: rule handle} of the rules in our chain (they carry the shim's name as comment)."""
    return {item["rule"]["comment"]: item["rule"]["handle"] for item in _items(output)
            if "rule" in item and "comment" in item["rule"]}


def _items(output):
    try:
        return json.loads(output).get("nftables", [])
    except (ValueError, AttributeError):
        return []
