"""CNI results: validation of prevResult per spec version, the pod's addresses, and version conversion.

Three shapes exist: 0.1.0/0.2.0 (`ip4`/`ip6` objects), 0.3.0-0.4.0 (`interfaces`, `ips` with `version`)
and 1.0.0/1.1.0 (`ips` without `version`). Results are passed through untouched when the output version has
the input's shape; otherwise they go through the 1.x shape, as libcni's converters do.
"""
import ipaddress

from . import SUPPORTED_VERSIONS, iproute, schema
from .errors import IncompatibleVersion, InvalidConfig

_SHAPE = {"0.1.0": "0.2", "0.2.0": "0.2", "0.3.0": "0.4", "0.3.1": "0.4", "0.4.0": "0.4", "1.0.0": "1", "1.1.0": "1"}
_SCHEMA = {"0.2": "result-0.2.0.json", "0.4": "result-0.4.0.json", "1": "result-1.0.0.json"}
# Pods have one or two addresses per interface. Each one is a route and a process while the shim's lock is held
# (and stdin's 1 MiB admits ~23,000), so ADD and CHECK refuse more, before any change.
MAX_POD_IPS = 64


def parse(document, config_version):
    """Validate a prevResult; return it with its cniVersion set (pre-1.0 results may omit it)."""
    version = document.get("cniVersion", config_version)
    if version not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion("incompatible CNI versions",
                                  f"prevResult has cniVersion {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    document = {**document, "cniVersion": version}
    schema.validate(document, _SCHEMA[_SHAPE[version]], "prevResult")
    if _SHAPE[version] != "0.2":  # (a 0.2 result has no `ips`: whatever stands under that key is ignored)
        _check_interface_indexes(document)
    for where, text in _addresses(document):
        try:
            ipaddress.ip_interface(text)
        except ValueError as e:
            raise InvalidConfig(f"invalid {where}", str(e)) from None
    return document


def _check_interface_indexes(document):
    """Each `ips[].interface` must index `interfaces`; as an int (JSON Schema counts 0.0 as an integer)."""
    interfaces = document.get("interfaces", [])
    if "ips" in document:
        document["ips"] = [{**ip, "interface": int(ip["interface"])} if "interface" in ip else ip
                           for ip in document["ips"]]
    for i, ip in enumerate(document.get("ips", [])):
        if "interface" in ip and ip["interface"] >= len(interfaces):
            raise InvalidConfig(f"invalid prevResult.ips[{i}].interface",
                                f"index {ip['interface']} but only {len(interfaces)} interfaces")


def pod_addresses(document, ifname):
    """The addresses ("ip/len", as the result gives them) on the pod interface `ifname` (see _pod_addresses)."""
    return [address for _, address in _pod_addresses(document, ifname)]


def pod_prefixes(document, ifname):
    """Host prefixes (/32, /128) of the IPs on the pod interface `ifname` (see _pod_addresses)."""
    return list(dict.fromkeys(iproute.host_prefix(a) for a in pod_addresses(document, ifname)))


def require_routable(document, ifname):
    """Refuse a pod whose IPs this plugin must not route through the shim, naming the field: more than
    MAX_POD_IPS, or an address no pod can own alone (a /32 route to it would take it from the node or the LAN)."""
    addresses = list(_pod_addresses(document, ifname))
    if len(addresses) > MAX_POD_IPS:
        raise InvalidConfig("invalid prevResult", f"{len(addresses)} IPs on {ifname}; this plugin routes at most "
                                                  f"{MAX_POD_IPS} per attachment")
    for where, address in addresses:
        reason = _not_unicast(ipaddress.ip_interface(address))
        if reason:
            raise InvalidConfig(f"invalid {where}", f"{address} is {reason}, not a pod's unicast address")


def _not_unicast(interface):
    ip = interface.ip
    for test, what in (("is_unspecified", "the unspecified address"), ("is_loopback", "a loopback address"),
                       ("is_multicast", "a multicast address"), ("is_link_local", "a link-local address")):
        if getattr(ip, test):
            return what
    if ip.version == 4 and (ip == ipaddress.IPv4Address("255.255.255.255")
                            or (interface.network.prefixlen < 31 and ip == interface.network.broadcast_address)):
        return "a broadcast address"
    if ip.version == 4 and ip in _THIS_NETWORK:
        return "an address of 0.0.0.0/8 ('this network')"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return "an IPv4-mapped address"
    return None


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _pod_addresses(document, ifname):
    """(field path, address) of the IPs on the pod interface `ifname`.

    As in portmap: an IP that names an interface counts only if that interface is `ifname` and lives in a
    sandbox (host-side veths of earlier plugins do not); an IP that names none belongs to the pod.
    """
    if _SHAPE[document["cniVersion"]] == "0.2":
        for key in ("ip4", "ip6"):
            if document.get(key):
                yield f"prevResult.{key}.ip", document[key]["ip"]
        return
    interfaces = document.get("interfaces", [])
    for i, ip in enumerate(document.get("ips", [])):
        index = ip.get("interface")
        if index is not None and (interfaces[index]["name"] != ifname or not interfaces[index].get("sandbox")):
            continue
        yield f"prevResult.ips[{i}].address", ip["address"]


def with_routes(document, extra):
    """The result with routes added (where each shape keeps them), for routes the plugin made in the pod."""
    if _SHAPE[document["cniVersion"]] != "0.2":
        have = document.get("routes", [])
        return {**document, "routes": have + [r for r in extra if r not in have]} if extra else document
    document = dict(document)
    for route in extra:
        key = "ip4" if _family(route["dst"]) == 4 else "ip6"
        if key in document and route not in document[key].get("routes", []):
            document[key] = {**document[key], "routes": document[key].get("routes", []) + [route]}
    return document


def render(document, version):
    """The result in spec `version`."""
    if _SHAPE[document["cniVersion"]] == _SHAPE[version]:
        return {**document, "cniVersion": version}
    current = _as_current(document)
    if _SHAPE[version] == "1":
        return {"cniVersion": version, **current}
    if _SHAPE[version] == "0.4":
        ips = [{"version": str(_family(ip["address"])), **ip} for ip in current["ips"]]
        return {"cniVersion": version, **current, "ips": ips}
    legacy = {"cniVersion": version}
    for family, key in ((4, "ip4"), (6, "ip6")):
        ip = next((ip for ip in current["ips"] if _family(ip["address"]) == family), None)
        if ip is None:
            continue
        config = {"ip": ip["address"], **({"gateway": ip["gateway"]} if "gateway" in ip else {})}
        routes = [r for r in current.get("routes", []) if _family(r["dst"]) == family]
        legacy[key] = {**config, **({"routes": routes} if routes else {})}
    if "dns" in current:
        legacy["dns"] = current["dns"]
    return legacy


def _as_current(document):
    """Any result in the 1.x shape, without cniVersion."""
    if _SHAPE[document["cniVersion"]] != "0.2":
        current = {k: v for k, v in document.items() if k != "cniVersion"}
        current["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in document.get("ips", [])]
        return current
    current = {"ips": [], "routes": []}
    for key in ("ip4", "ip6"):
        config = document.get(key)
        if config:
            current["ips"].append({"address": config["ip"],
                                   **({"gateway": config["gateway"]} if "gateway" in config else {})})
            current["routes"].extend(config.get("routes", []))
    if "dns" in document:
        current["dns"] = document["dns"]
    return current


def _addresses(document):
    """(field path, text) of every address and gateway, to check beyond what a schema pattern can."""
    if _SHAPE[document["cniVersion"]] == "0.2":
        for key in ("ip4", "ip6"):
            config = document.get(key) or {}
            for field in ("ip", "gateway"):
                if field in config:
                    yield f"prevResult.{key}.{field}", config[field]
            for j, route in enumerate(config.get("routes", [])):
                yield f"prevResult.{key}.routes[{j}].dst", route["dst"]
        return
    for i, ip in enumerate(document.get("ips", [])):
        yield f"prevResult.ips[{i}].address", ip["address"]
        if "gateway" in ip:
            yield f"prevResult.ips[{i}].gateway", ip["gateway"]
    for j, route in enumerate(document.get("routes", [])):
        yield f"prevResult.routes[{j}].dst", route["dst"]


def _family(text):
    return ipaddress.ip_interface(text).version
