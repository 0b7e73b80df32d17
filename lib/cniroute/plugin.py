"""The verbs: parse config -> parse prevResult -> act on the host -> result, as containernetworking's plugins do."""
from collections import namedtuple

from . import SUPPORTED_VERSIONS, config, files, iproute, pod_routes, reply_paths, result, routes, shim, via_host
from .errors import (
    AddressCollision,
    CheckFailed,
    CNIError,
    IncompatibleVersion,
    InvalidConfig,
    InvalidEnvironment,
    IOFailure,
    PluginNotAvailable,
    TryAgainLater,
)
from .node import Node
from .records import Attachment, owner_id
from .store import Store, file_stem


class Invocation(namedtuple("Invocation", "command container_id netns ifname", defaults=(None, None, None))):
    """The CNI_* environment of one call."""

    __slots__ = ()

    @property
    def owner(self):
        return owner_id(self.container_id, self.ifname)


def version(document):
    """The spec says: echo the cniVersion of the input; one we do not speak is answered with our newest."""
    asked = document.get("cniVersion", "0.1.0")
    return {"cniVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1],
            "supportedVersions": list(SUPPORTED_VERSIONS)}


def add(conf, inv, runner):
    prev = _require_prev_result(conf, "ADD")
    _require_netns(runner, inv)
    result.require_routable(prev, inv.ifname)
    prefixes = result.pod_prefixes(prev, inv.ifname)
    if conf.route_via_host:
        via_host.require_programs(runner)
    master, shim_name = _require_master(*locate(conf, runner))
    store = Store(conf.state_dir, runner.dry_run, adopts_older_claims=True)
    attachment = Attachment(inv.container_id, inv.ifname, conf.name, master, shim_name, prefixes)
    links = reply_paths.observe(runner, inv.netns)  # the pod's other interfaces: ours alone to see, outside the lock
    with store.shim_lock(shim_name):
        node = Node.observe(runner, neighbours_of=routes.addresses(prefixes))
        master_link = shim.require_master(node, master)
        collisions = node.collisions(prefixes, shim_name)
        if collisions:  # before any change: the plugin must never be what cuts the node off
            raise AddressCollision("; ".join(collisions), "a pod must not get an address the node uses itself: "
                                   "keep the IPAM range (or a static IP) clear of the node's addresses and gateways")
        addresses = node.shim_addresses(master, shim_name, conf.node_addresses)
        was_down = shim.ensure(runner, node, master, shim_name, addresses)
        planned = via_host.plan(conf.route_via_host, addresses, master) if conf.route_via_host else []
        if planned:
            via_host.require_forwarding(runner, planned)
        in_pod = pod_routes.on_link(addresses, master_link, result.pod_addresses(prev, inv.ifname)) + planned
        rules, table_routes = reply_paths.paths(runner, inv.netns, links, inv.ifname, node.links, addresses,
                                                     shim_name)
        table_routes = reply_paths.leave_foreign(runner, inv.netns, table_routes)
        attachment = attachment._replace(pod_routes=in_pod, log_file=conf.log_file,
                                         log_max_bytes=conf.log_max_bytes, node_addresses=conf.node_addresses,
                                         reply_rules=rules, reply_routes=table_routes, netns=inv.netns,
                                         netns_id=runner.host.namespace_id(inv.netns),
                                         node_view=pod_routes.node_view(addresses, master_link, node.links, shim_name))
        # State first: if we die before the routes are in, DEL still knows what to remove.
        store.save(attachment)
        for prefix in prefixes:
            store.claim(prefix, attachment.claimant)  # a stale route to it is now ours (replace takes it over)
        if was_down:  # the kernel dropped the shim's routes with it: put back those of the other pods
            _restore_others(runner, store, shim_name, attachment.claimant)
        routes.install(runner, prefixes, shim_name)
        # The address may have had another pod's MAC. (An entry the node made since it was read resolved the
        # address as it is now: the pod's interface is up before the chain calls us.)
        routes.forget_neighbours(runner, node.neighbours, shim_name)
        if planned:
            with store.nft_lock():
                via_host.ensure_masquerade(runner, shim_name)
        pod_routes.install(runner, pod_routes.plan(attachment), inv.netns, inv.ifname)
    return result.render(result.with_routes(prev, pod_routes.as_result(in_pod, conf.version)),
                         conf.version)


def delete(conf, inv, runner):
    """Remove the pod's routes. Whatever is already gone is fine: a failing DEL would stop the chain."""
    store = Store(conf.state_dir, runner.dry_run, adopts_older_claims=True)
    recorded = store.attachment(conf.name, inv.owner)
    for _ in range(3):
        master, shim_name = locate(conf, runner, recorded)
        if shim_name is None:  # no shim was ever known for this pod, so no route of ours can exist
            store.forget(conf.name, inv.owner)
            return None
        with store.shim_lock(shim_name):
            # Read again under the lock: an ADD of this attachment may have finished while we waited for it.
            recorded = store.attachment(conf.name, inv.owner)
            if recorded is None or recorded.shim == shim_name:
                attachment = recorded or Attachment(inv.container_id, inv.ifname, conf.name, master, shim_name, [])
                if conf.prev_result is not None:
                    prefixes = list(attachment.prefixes)
                    prefixes += [p for p in result.pod_prefixes(conf.prev_result, inv.ifname) if p not in prefixes]
                    attachment = attachment._replace(prefixes=prefixes)
                _detach(runner, store, attachment, inv.netns)
                return None
        # (the record is on another shim than we locked: take that one's lock instead)
    raise TryAgainLater(f"the record of {inv.owner} keeps changing shims", "concurrent ADDs with changing configs")


def check(conf, inv, runner):
    _require_version(conf, "0.4.0", "CHECK")
    prev = _require_prev_result(conf, "CHECK")
    _require_netns(runner, inv)
    result.require_routable(prev, inv.ifname)
    master, shim_name = _require_master(*locate(conf, runner))
    prefixes = result.pod_prefixes(prev, inv.ifname)
    node = Node.observe(runner, routes_to=prefixes)
    addresses = node.shim_addresses(master, shim_name, conf.node_addresses) if master in node.links else []
    found = shim.problems(runner, node, master, shim_name, addresses)
    found += routes.problems(runner, prefixes, shim_name, node.routes_to)
    if master in node.links:
        wanted = pod_routes.on_link(addresses, node.links[master], result.pod_addresses(prev, inv.ifname))
        if conf.route_via_host:
            planned = via_host.plan(conf.route_via_host, addresses, master)
            found += via_host.forwarding_off(runner, planned)
            found += via_host.programs_missing(runner)
            wanted += planned
            if not via_host.has_masquerade(runner, shim_name):
                found.append(f"no masquerade rule for {shim_name} in nft table inet cni_route")
        recorded = Store(conf.state_dir, runner.dry_run).attachment(conf.name, inv.owner)
        replies = pod_routes.plan(recorded) if recorded is not None else pod_routes.PodPlan([])
        found += pod_routes.problems(runner, replies._replace(routes=wanted), inv.netns, inv.ifname)
    if found:
        raise CheckFailed("; ".join(found))
    return None


def gc(conf, inv, runner):
    """Detach every attachment of this network that the runtime no longer lists; keep the shim.

    Goes on past a failing attachment and reports the first error at the end, so one bad record
    cannot keep the rest from being cleaned.
    """
    _require_version(conf, "1.1.0", "GC")
    if conf.valid_attachments is None:
        raise InvalidConfig("invalid cni.dev/valid-attachments", "GC needs the list of valid attachments")
    valid = {owner_id(a["containerID"], a["ifname"]) for a in conf.valid_attachments}
    valid_stems = {file_stem(owner) for owner in valid}
    store = Store(conf.state_dir, runner.dry_run, adopts_older_claims=True)
    try:
        entries = store.entries(conf.name)
    except OSError as e:  # not a directory of ours (a symlink...): nothing is removed through it
        raise IOFailure(f"cannot list the state of network {conf.name}", files.why(e)) from None
    first_error = None
    for stem, record in entries:
        if stem in valid_stems:
            continue
        try:
            if record is None:  # unreadable: there is nothing we could safely delete by it
                runner.journal.comment(f"gc: dropping unreadable state {stem}")
                store.forget_entry(conf.name, stem)
                continue
            with store.shim_lock(record.shim):
                _detach(runner, store, record, None)
        except Exception as e:  # any failure stays with its attachment: the others are still cleaned
            runner.journal.comment(f"gc: {stem}: {type(e).__name__}: {e}")
            first_error = first_error or e
    for prefix, claimant in store.claimed().items():
        network, _, owner = (claimant or "").partition("/")
        if not owner or (network == conf.name and owner not in valid and store.attachment(network, owner) is None):
            store.release(prefix, claimant)  # a claim whose attachment is gone
    store.sweep_temporaries(conf.name)
    if first_error is not None:
        raise first_error
    return None


def status(conf, inv, runner):
    """Whether this node can take pods now: the master is there and up, and the shim is ours or creatable."""
    _require_version(conf, "1.1.0", "STATUS")
    try:
        master, shim_name = _require_master(*locate(conf, runner))
    except InvalidConfig as e:
        raise PluginNotAvailable(e.msg, e.details) from None
    require_available(runner, master, shim_name, conf.route_via_host, conf.node_addresses)
    return None


def require_available(runner, master, shim_name, route_via_host, node_addresses):
    """STATUS's answer for one shim on its master (also the watcher's readiness for the networks it has
    records of): PluginNotAvailable when the node cannot take pods on it now."""
    node = Node.observe(runner)
    links = node.links
    if master not in links:
        raise PluginNotAvailable(f"master {master} does not exist")
    if not links[master].up:
        raise PluginNotAvailable(f"master {master} is down")
    conflict = shim.master_conflict(node, master)
    if conflict:
        raise PluginNotAvailable(conflict)
    if shim_name in links:
        reason = shim.foreign_reason(links[shim_name], links[master])
        if reason:
            raise PluginNotAvailable(f"the shim's name {shim_name} is taken: {reason}")
    if route_via_host:
        try:
            addresses = node.shim_addresses(master, shim_name, node_addresses)
            off = via_host.forwarding_off(runner, via_host.plan(route_via_host, addresses, master))
        except CNIError as e:
            raise PluginNotAvailable(e.msg, e.details) from None
        off += via_host.programs_missing(runner)
        if off:
            raise PluginNotAvailable("; ".join(off))


def locate(conf, runner, recorded=None):
    """(master, shim) of a call: the one rule for every verb. What ADD recorded for the attachment, if there is
    a record (DEL, GC: the config may have changed since). Otherwise the config: `master`, else the device of
    the IPv4 default route, as the reference macvlan plugin does; `bridge`, else a name derived from the
    master. Either is None when nothing names it (the node has no default route)."""
    if recorded is not None:
        return recorded.master, recorded.shim
    master = conf.master or _default_route_device(runner)
    return master, (config.shim_name(master, conf.bridge) if master or conf.bridge else None)


def _require_master(master, shim_name):
    if master is None:
        raise InvalidConfig("invalid master: not set, and the host has no default route to take it from")
    return master, shim_name


def _detach(runner, store, attachment, netns):
    """Delete the attachment's routes (only those it still owns) and forget it. Call with its shim's lock held.

    Also the pod-side routes (if the pod's namespace is still there), and with routeViaHost the shim's
    masquerade rule once no attachment on this shim needs it any more.
    """
    claimant, shim_name = attachment.claimant, attachment.shim
    mine = [p for p in attachment.prefixes if store.owner_of(p) in (None, claimant)]
    for prefix in attachment.prefixes:
        if prefix not in mine:
            runner.journal.comment(f"{prefix} now belongs to {store.owner_of(prefix)}: route left alone")
    # One read: an entry the node makes between it and the route's delete is dropped by the next ADD of the address.
    observed, neighbours = routes.observe_with_neighbours(runner, mine)
    routes.remove(runner, observed, shim_name)
    routes.forget_neighbours(runner, neighbours, shim_name)
    # Only the namespace the runtime names now: a remembered /proc/PID/ns/net may be another pod's by now.
    pod_routes.remove(runner, pod_routes.plan(attachment), netns, attachment.ifname)
    if attachment.via_host and not store.any_uses_via_host(shim_name, besides=claimant):  # a kill here is redone
        with store.nft_lock():
            via_host.remove_masquerade(runner, shim_name)
    for prefix in mine:
        store.release(prefix, claimant)
    store.forget(attachment.network, attachment.owner)


def _restore_others(runner, store, shim_name, me):
    """Put back the routes of every other attachment recorded on the shim, where its claim still stands (a
    route another pod owns now is left to that pod)."""
    prefixes = [p for record in store.records_on(shim_name) if record.claimant != me
                for p in record.prefixes if store.owner_of(p) in (None, record.claimant)]
    routes.install(runner, prefixes, shim_name)


def _default_route_device(runner):
    return next((r["dev"] for r in runner.read([iproute.show_default_route()]) if "dev" in r), None)


def _require_prev_result(conf, verb):
    if conf.prev_result is None:
        raise InvalidConfig("must be called as a chained plugin", f"{verb} needs prevResult from the plugin before it")
    return conf.prev_result


def _require_netns(runner, inv):
    """ADD and CHECK are about a live container: CNI_NETNS must be its network namespace (as for every
    reference plugin, which enters it). DEL does not ask: the namespace may be gone by then."""
    if not runner.host.is_network_namespace(inv.netns):
        raise InvalidEnvironment("invalid CNI_NETNS", f"{inv.netns!r} is not a network namespace")


def _require_version(conf, oldest, verb):
    if SUPPORTED_VERSIONS.index(conf.version) < SUPPORTED_VERSIONS.index(oldest):
        raise IncompatibleVersion(f"config version does not allow {verb}",
                                  f"{verb} needs cniVersion {oldest} or later; the config has {conf.version}")
