"""What the plugin records of an attachment (schemas/attachment.json), and the named records of everything it
puts in a pod: a pod route, a reply rule, a reply table's route. Their JSON, both ways, is here and nowhere
else. A record is checked as strictly as input when read back: what it holds ends up in commands."""
import ipaddress
from collections import namedtuple

from . import config, schema
from .errors import InvalidConfig

COOKIE = "cookie:"  # a namespace identity by its cookie, as host.SystemHost writes it (else DEVICE:INODE)

# The attachment record's format, its key "format"; a record without one is format 1 (route 0.1.0 and before).
# A later format only adds keys, and every release reads a record's keys it knows and passes over the others:
# so a release reads every earlier format, and the previous release still DELs and GCs what this one writes.
RECORD_FORMAT = 2


def owner_id(container_id, ifname):
    # '@' can occur in neither a container ID nor an interface name (both are validated).
    return f"{container_id}@{ifname}"


class PodRoute(namedtuple("PodRoute", "dst gateway")):
    """A route in the pod's main table on our interface: `dst dev IFNAME scope link` to a node address outside
    the pod's subnets (gateway None: on-link), or `dst via GATEWAY dev IFNAME`, routeViaHost's (pod_routes.py)."""

    __slots__ = ()


class ReplyRule(namedtuple("ReplyRule", "address table")):
    """`from ADDRESS lookup TABLE` in a pod of several interfaces (pod_routes.py); on disk [address, table]."""

    __slots__ = ()

    @classmethod
    def from_json(cls, entry):
        address, table = entry  # ValueError: not two of them
        return cls(str(ipaddress.ip_address(address)), _number(table))


class TableRoute(namedtuple("TableRoute", "table dst gateway dev onlink metric")):
    """A route of a reply table in the pod (gateway and metric may be None); on disk [table, dst, gateway, dev,
    onlink, metric]."""

    __slots__ = ()

    @classmethod
    def from_json(cls, entry):
        table, dst, gateway, dev, onlink, metric = entry  # ValueError: not six of them
        return cls(_number(table), str(ipaddress.ip_network(dst)),
                   None if gateway is None else str(ipaddress.ip_address(gateway)), _ifname(dev), _flag(onlink),
                   None if metric is None else _number(metric))


class Attachment(namedtuple("Attachment", "container_id ifname network master shim prefixes pod_routes "
                                         "log_file log_max_bytes node_addresses reply_rules reply_routes netns "
                                         "netns_id node_view",
                                defaults=([], None, None, None, [], [], None, None, None))):
    """One attachment as ADD made it: the shim (on master) its host prefixes are routed through; the routes it
    put in the pod's main table (pod_routes: PodRoute, the on-link ones first, as they are installed); what of
    its config `route reconcile` needs to remake the shim as ADD did and to log where the network's own calls
    log: logFile, logMaxBytes (None: stderr, the default size) and nodeAddresses (None: the automatic choice);
    in a pod of several interfaces, the reply paths it made there (reply_rules: ReplyRule, reply_routes:
    TableRoute); and the pod's namespace: its path (netns, the ADD's CNI_NETNS) and which namespace that was
    (netns_id, host.SystemHost.namespace_id), for `route doctor` to look into the pod and for reconcile to put
    the pod's own routes back, each only while it still holds the pod (DEL changes only the namespace the
    runtime names then); node_view, what of the node the pod side was made for (pod_routes.node_view: reconcile
    enters only the pods made for another node than the node of now). On disk as schemas/attachment.json (keys
    containerID, ifname, network, master, bridge, prefixes, viaHost, and optionally onLink, logFile,
    logMaxBytes, nodeAddresses, replyRules, replyRoutes, netns, netnsID, nodeView: records written before they
    existed stay readable); the pod routes are split there into onLink (their dst) and viaHost ([dst,
    gateway])."""

    __slots__ = ()

    @property
    def owner(self):
        return owner_id(self.container_id, self.ifname)

    @property
    def claimant(self):
        """What an ownership file (ips/ADDRESS) says when this attachment owns the route: node-wide, so with the
        network ('/' is in no network name)."""
        return f"{self.network}/{self.owner}"

    @property
    def via_host(self):
        """The pod routes through the node (routeViaHost's): those with a gateway."""
        return [route for route in self.pod_routes if route.gateway is not None]

    def to_json(self):
        document = {"format": RECORD_FORMAT, "containerID": self.container_id, "ifname": self.ifname,
                    "network": self.network, "master": self.master, "bridge": self.shim,
                    "prefixes": list(self.prefixes),
                    "viaHost": [[route.dst, route.gateway] for route in self.via_host],
                    "onLink": [route.dst for route in self.pod_routes if route.gateway is None]}
        if self.log_file:
            document["logFile"] = self.log_file
            if self.log_max_bytes:
                document["logMaxBytes"] = self.log_max_bytes
        if self.node_addresses is not None:
            document["nodeAddresses"] = [str(n) for n in self.node_addresses]
        if self.reply_rules or self.reply_routes:
            document["replyRules"] = [list(rule) for rule in self.reply_rules]
            document["replyRoutes"] = [list(route) for route in self.reply_routes]
        if self.netns:
            document["netns"] = self.netns
        if self.netns and self.netns_id:
            # A cookie has a key of its own: route 0.1.0 reads netnsID as DEVICE:INODE only, and a record it cannot
            # read is one its DEL (after a rollback) would leave in place.
            if self.netns_id.startswith(COOKIE):
                document["netnsCookie"] = int(self.netns_id[len(COOKIE):])
            else:
                document["netnsID"] = self.netns_id
        if self.node_view is not None:
            document["nodeView"] = list(self.node_view)
        return document

    @classmethod
    def from_json(cls, document):
        """The record, or None when it is not one the plugin could have written (the schema, then every part
        parsed)."""
        try:
            schema.validate(document, "attachment.json", "attachment")
            prefixes = [str(ipaddress.ip_network(p)) for p in document["prefixes"]]
            pod_routes = [PodRoute(str(ipaddress.ip_network(dst)), None) for dst in document.get("onLink", [])]
            pod_routes += [PodRoute(str(ipaddress.ip_network(cidr)), str(ipaddress.ip_address(gateway)))
                           for cidr, gateway in document["viaHost"]]
            node_addresses = document.get("nodeAddresses")
            if node_addresses is not None:
                node_addresses = [ipaddress.ip_network(n) for n in node_addresses]
            reply_rules = [ReplyRule.from_json(entry) for entry in document.get("replyRules", [])]
            reply_routes = [TableRoute.from_json(entry) for entry in document.get("replyRoutes", [])]
        except (InvalidConfig, ValueError):  # ValueError: a bad address or table, an entry of the wrong length
            return None
        return cls(document["containerID"], document["ifname"], document["network"], document["master"],
                   document["bridge"], prefixes, pod_routes, document.get("logFile"), document.get("logMaxBytes"),
                   node_addresses, reply_rules, reply_routes, document.get("netns"), _namespace_id(document),
                   document.get("nodeView"))


def _namespace_id(document):
    """The pod namespace's identity as host.SystemHost gives it: cookie:N, or DEVICE:INODE (older records and
    kernels that tell no cookie); None when not recorded."""
    if "netnsCookie" in document:
        return f"{COOKIE}{document['netnsCookie']}"
    return document.get("netnsID")


def _number(value):
    """A table or metric of a record: a u32."""
    if type(value) is not int or not 0 <= value < 2 ** 32:
        raise ValueError(f"not a table or metric: {value!r}")
    return value


def _ifname(value):
    """A pod interface's name in a reply route: any the kernel takes (another plugin or the pod named it)."""
    if not config.is_kernel_ifname(value):
        raise ValueError(f"not an interface name: {value!r}")
    return value


def _flag(value):
    if type(value) is not bool:
        raise ValueError(f"not a flag: {value!r}")
    return value
