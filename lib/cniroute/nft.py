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


def list_chain():
    return ["-j", "list", "chain", *TABLE, CHAIN]


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
    return any(item.get("table", {}).get("family") == TABLE[0] and item["table"].get("name") == TABLE[1]
               for item in _items(output))


def masquerade_rules(output):
    """{shim: rule handle} of the rules in our chain (they carry the shim's name as comment)."""
    return {item["rule"]["comment"]: item["rule"]["handle"] for item in _items(output)
            if "rule" in item and "comment" in item["rule"]}


def has_masquerade(output, shim):
    """Whether our chain has the shim's rule as add_masquerade makes it, not merely a rule with its comment."""
    return any(item["rule"].get("comment") == shim and item["rule"].get("expr") == masquerade_expr(shim)
               for item in _items(output) if "rule" in item)


def masquerade_expr(shim):
    """add_masquerade's rule as `nft -j` lists it."""
    return [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": shim}},
            {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
            {"masquerade": None}]


def _items(output):
    try:
        return json.loads(output).get("nftables", [])
    except (ValueError, AttributeError):
        return []
