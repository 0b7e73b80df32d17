"""The shim: a bridge-mode macvlan on the master, through which the node reaches its macvlan pods.

The kernel does not pass frames between a macvlan's master and its children, but bridge-mode siblings on
the same master reach each other; the shim is such a sibling in the node's namespace.
"""
from dataclasses import dataclass, field
from typing import Optional

from . import iproute
from .errors import DeviceMissing, ShimConflict


@dataclass(frozen=True)
class Link:
    name: str
    kind: Optional[str]  # linkinfo.info_kind: "macvlan", "veth", ...; None for plain devices
    mode: Optional[str]  # macvlan mode
    parent: Optional[str]  # the lower device ("link"), for macvlan its master
    up: bool  # administratively up
    mtu: int
    addresses: tuple = field(default=())

    @classmethod
    def from_json(cls, obj):
        info = obj.get("linkinfo") or {}
        return cls(
            name=obj["ifname"], kind=info.get("info_kind"), mode=(info.get("info_data") or {}).get("mode"),
            parent=obj.get("link"), up="UP" in obj.get("flags", ()), mtu=obj.get("mtu", 0),
            addresses=tuple(f"{a['local']}/{a['prefixlen']}" for a in obj.get("addr_info", ()) if "local" in a))


def observe(runner, names):
    """The named links that exist, by name, from one batched `ip -json -d addr show`."""
    return {obj["ifname"]: Link.from_json(obj)
            for obj in runner.read([iproute.show_link(n) for n in names]) if "ifname" in obj}


def foreign_reason(shim, master):
    """Why an existing device cannot serve as our shim, or None if it can."""
    if shim.kind != "macvlan":
        return f"it is a {shim.kind or 'plain'} device, not a macvlan"
    if shim.mode != "bridge":
        return f"it is a macvlan in {shim.mode} mode, not bridge"
    if shim.parent != master:
        return f"it is a macvlan on {shim.parent}, not on {master}"
    return None


def ensure(runner, master_name, shim_name):
    """Make the shim exist, up, with the master's MTU. Refuse, untouched, a device that only has its name."""
    links = observe(runner, [master_name, shim_name])
    master = links.get(master_name)
    if master is None:
        raise DeviceMissing(f"master {master_name} does not exist", "set `master` to the macvlan master device")
    shim = links.get(shim_name)
    if shim is None:
        runner.change(iproute.add_shim(shim_name, master_name))
        runner.change(iproute.set_link_up(shim_name))
        return
    reason = foreign_reason(shim, master_name)
    if reason:
        raise ShimConflict(f"device {shim_name} exists but is not this plugin's shim: {reason}",
                           "rename or remove it, or set `bridge` to another name")
    if shim.mtu != master.mtu:
        runner.change(iproute.set_link_mtu(shim_name, master.mtu))
    if not shim.up:
        runner.change(iproute.set_link_up(shim_name))


def problems(runner, master_name, shim_name):
    """What CHECK finds wrong with the shim, as sentences; empty when healthy."""
    links = observe(runner, [master_name, shim_name])
    shim = links.get(shim_name)
    if master_name not in links:
        return [f"master {master_name} does not exist"]
    if shim is None:
        return [f"shim {shim_name} does not exist"]
    found = []
    reason = foreign_reason(shim, master_name)
    if reason:
        found.append(f"shim {shim_name} is wrong: {reason}")
    if not shim.up:
        found.append(f"shim {shim_name} is down")
    return found
