"""The verbs: parse config -> parse prevResult -> act on the host -> result, as containernetworking's plugins do."""
from dataclasses import dataclass
from typing import Optional

from . import SUPPORTED_VERSIONS, config, iproute, lock, result, routes, shim
from .errors import CheckFailed, InvalidConfig
from .state import Store

LOCK_TIMEOUT = 30.0  # seconds; a holder does a handful of ip calls, so waiting longer means something is stuck


@dataclass(frozen=True)
class Invocation:
    """The CNI_* environment of one call."""
    command: str
    container_id: Optional[str] = None
    netns: Optional[str] = None
    ifname: Optional[str] = None


def version(document):
    return {"cniVersion": document.get("cniVersion", "0.1.0") if isinstance(document, dict) else "0.1.0",
            "supportedVersions": list(SUPPORTED_VERSIONS)}


def add(conf, inv, runner):
    prev = _require_prev_result(conf, "ADD")
    prefixes = result.pod_prefixes(prev, inv.ifname)
    master = resolve_master(conf, runner)
    shim_name = config.shim_name(master, conf.bridge)
    store = Store(conf.state_dir, conf.name, runner.dry_run)
    with lock.held(store.lock_path(shim_name), LOCK_TIMEOUT):
        shim.ensure(runner, master, shim_name)
        # State first: if we die before the routes are in, DEL still knows what to remove.
        store.save(inv.container_id, inv.ifname, {
            "containerID": inv.container_id, "ifname": inv.ifname, "network": conf.name,
            "master": master, "bridge": shim_name, "prefixes": prefixes})
        routes.install(runner, prefixes, shim_name)
    return result.render(prev, conf.version)


def delete(conf, inv, runner):
    """Remove the pod's routes. Whatever is already gone is fine: a failing DEL would stop the chain."""
    store = Store(conf.state_dir, conf.name, runner.dry_run)
    saved = store.load(inv.container_id, inv.ifname) or {}
    prefixes = list(saved.get("prefixes", []))
    if conf.prev_result is not None:
        prefixes += [p for p in result.pod_prefixes(conf.prev_result, inv.ifname) if p not in prefixes]
    shim_name = conf.bridge or saved.get("bridge")
    if shim_name is None:
        master = conf.master or saved.get("master") or _default_route_device(runner)
        shim_name = config.shim_name(master, None) if master else None
    if shim_name is None:  # no shim was ever known for this pod, so no route of ours can exist
        store.remove(inv.container_id, inv.ifname)
        return None
    with lock.held(store.lock_path(shim_name), LOCK_TIMEOUT):
        routes.remove(runner, prefixes, shim_name)
        store.remove(inv.container_id, inv.ifname)
    return None


def check(conf, inv, runner):
    prev = _require_prev_result(conf, "CHECK")
    master = resolve_master(conf, runner)
    shim_name = config.shim_name(master, conf.bridge)
    found = shim.problems(runner, master, shim_name)
    found += routes.problems(runner, result.pod_prefixes(prev, inv.ifname), shim_name)
    if found:
        raise CheckFailed("; ".join(found))
    return None


def resolve_master(conf, runner):
    """The configured master, else the device of the IPv4 default route, as the reference macvlan plugin does."""
    master = conf.master or _default_route_device(runner)
    if master is None:
        raise InvalidConfig("invalid master: not set, and the host has no default route to take it from")
    return master


def _default_route_device(runner):
    return next((r["dev"] for r in runner.read([iproute.show_default_route()]) if "dev" in r), None)


def _require_prev_result(conf, verb):
    if conf.prev_result is None:
        raise InvalidConfig("must be called as a chained plugin", f"{verb} needs prevResult from the plugin before it")
    return conf.prev_result
