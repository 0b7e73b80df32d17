"""The network configuration on stdin: decode, check the version, validate against schemas/config.json."""
import ipaddress
import json
import re
from collections import namedtuple

from . import SUPPORTED_VERSIONS, result, schema
from .errors import DecodingFailure, IncompatibleVersion, InvalidConfig

MAX_STDIN = 1 << 20  # a conflist entry with its prevResult is a few KiB; more is a mistake or an attack
MAX_DEPTH = 32  # real configs nest 6 deep; this bound keeps every recursive walk (schema checks) safe
DEFAULT_STATE_DIR = "/run/cni-route"  # routes die with a reboot, so does what we remember of them
IFNAMSIZ = 15
# Interface names as schemas/config.json's "ifname" allows them (also applied to CNI_IFNAME and state).
IFNAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9_.\-]{1,15}\Z")
# Any name the kernel gives an interface (dev_valid_name): route stores a pod's other interfaces' names as the
# pod has them (`x@y` is one), in the reply paths it records.
KERNEL_IFNAME = re.compile(r"(?!\.\.?\Z)[^/:\s\x00\ufffd]+\Z")  # (U+FFFD: bytes that were no UTF-8)


def is_kernel_ifname(name):
    return isinstance(name, str) and len(name.encode()) <= IFNAMSIZ and bool(KERNEL_IFNAME.match(name))
DEFAULT_LOG_MAX_BYTES = 10 << 20
DEFAULT_IP_TIMEOUT = 10.0


# The parsed configuration. (namedtuple, not dataclass: dataclasses compile code at import, ~2 ms each.)
NetConf = namedtuple("NetConf", [
    "version", "name",
    "master",  # None: take the device of the default route
    "bridge",  # None: derive from master
    "state_dir", "prev_result", "log_file", "log_max_bytes", "dry_run", "ip_timeout",
    "valid_attachments",  # GC's cni.dev/valid-attachments
    "route_via_host",  # CIDRs the pod reaches through the node (normalised networks)
    "node_addresses",  # None: the automatic choice; else the networks whose node addresses the shim carries
])


def decode(data):
    """Bytes from stdin -> JSON object; DecodingFailure for anything that is not a JSON document."""
    if len(data) > MAX_STDIN:
        raise DecodingFailure("failed to decode config", f"stdin is larger than {MAX_STDIN} bytes")
    try:
        document = json.loads(data, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise DecodingFailure("failed to decode config", str(e)[:300]) from None
    if not isinstance(document, dict):
        raise DecodingFailure("failed to decode config", f"expected a JSON object, got {type(document).__name__}")
    if _depth(document) > MAX_DEPTH:
        raise DecodingFailure("failed to decode config", f"JSON nested deeper than {MAX_DEPTH} levels")
    return document


def _not_json(name):
    """Python's json takes NaN, Infinity and -Infinity, which JSON has not (and every comparison with NaN is
    false, so a schema bound would not catch it)."""
    raise ValueError(f"{name} is not JSON")


def _finite(text):
    """A JSON number as a float; one too large for a float (1e400) would become infinity, which JSON has not."""
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is too large a number")
    return number


def _depth(value):
    """Nesting depth of a JSON value, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def requested_version(document):
    """The cniVersion asked for; as in libcni, a config without one means 0.1.0."""
    version = document.get("cniVersion", "0.1.0")
    if version not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion("incompatible CNI versions",
                                  f"config is {version!r}, plugin supports {', '.join(SUPPORTED_VERSIONS)}")
    return version


def load(document):
    version = requested_version(document)
    document = {**document, "cniVersion": version}
    schema.validate(document, "config.json", "")
    prev = document.get("prevResult")
    return NetConf(
        version=version,
        name=document["name"],
        master=document.get("master"),
        bridge=document.get("bridge"),
        state_dir=document.get("stateDir", DEFAULT_STATE_DIR),
        prev_result=result.parse(prev, version) if prev is not None else None,
        log_file=document.get("logFile"),
        log_max_bytes=document.get("logMaxBytes", DEFAULT_LOG_MAX_BYTES),
        dry_run=document.get("dryRun", False),
        ip_timeout=document.get("ipTimeoutSeconds", DEFAULT_IP_TIMEOUT),
        valid_attachments=document.get("cni.dev/valid-attachments"),
        route_via_host=_networks(document.get("routeViaHost", []), "routeViaHost"),
        node_addresses=(None if "nodeAddresses" not in document
                        else [ipaddress.ip_network(n) for n in _networks(document["nodeAddresses"], "nodeAddresses")]),
    )


def _networks(cidrs, field):
    """CIDRs as networks ('10.96.0.1/12' is refused: host bits set), without repeats."""
    networks = []
    for i, text in enumerate(cidrs):
        try:
            network = str(ipaddress.ip_network(text))
        except ValueError as e:
            raise InvalidConfig(f"invalid {field}[{i}]", str(e)) from None
        if network not in networks:
            networks.append(network)
    return networks


def shim_name(master, bridge=None):
    """The configured bridge, else `<master>.host`, else (too long) a short name that is stable per master."""
    if bridge:
        return bridge
    name = master + ".host"
    if len(name) <= IFNAMSIZ:
        return name
    import hashlib  # rare, and it loads OpenSSL

    return master[:9] + "." + hashlib.sha256(master.encode()).hexdigest()[:5]
