"""doctor's checks of recorded pods: each pod address (its route on the shim, the path the kernel takes to it,
its neighbour entry and, with --probe, one ping), and the reply paths of a pod of several interfaces."""
import ipaddress
from collections import namedtuple

from .. import iproute, routes
from ..errors import CommandFailed
from ..runner import ANY_STATUS
from .verdicts import FAIL, WARN, Check, Docs, ip_command, ok, worst

PROBE_LIMIT = 32
PROBE_WAIT = 1

# Per recorded pod address: {prefix: routes to it}, {address: the device the kernel sends it through},
# {address: its neighbour state}.
Observed = namedtuple("Observed", "routes paths neighbours")


class PodChecks:
    """The checks of the pods on one node; with `probe`, at most PROBE_LIMIT pings over all of them."""

    def __init__(self, runner, probe=False):
        self.runner = runner
        self.probe = probe
        self.probes_left = PROBE_LIMIT if probe else 0

    def observe(self, shim_name, prefixes):
        """Per pod address: the routes to its prefix, the device the kernel sends it through, its neighbour
        state; batched reads."""
        addresses = routes.addresses(prefixes)
        paths, neighbours = {}, {}
        for ipv6 in (False, True):
            mine = [a for a in addresses if (iproute.family(a) == 6) == ipv6]
            for route in self.runner.read([iproute.get_route(a) for a in mine], ipv6=ipv6):
                paths[route.get("dst")] = route.get("dev")
        for entry in routes.neighbours(self.runner, prefixes):
            if entry.get("dev") == shim_name:
                neighbours[entry.get("dst")] = entry.get("state") or []
        return Observed(routes.observe(self.runner, prefixes), paths, neighbours)

    def address(self, store, record, prefix, shim_name, seen, foreign_shim):
        """The check of one of the record's prefixes, from what `observe` saw."""
        address = str(ipaddress.ip_interface(prefix).ip)
        subject = f"pod {address}"
        owner = store.owner_of(prefix)
        if owner not in (None, record.claimant):
            return Check(subject, WARN, f"{record.owner}'s record, but the address now belongs to {owner} (IPAM "
                         "gave it to a new pod before this one's DEL)",
                         ("# nothing to do: that DEL, or the runtime's GC, removes this record and leaves the "
                          "route alone",), Docs.POD_ADDRESSES)
        found, fix, verdicts = [record.owner], [], []
        on_shim = [r for r in seen.routes.get(prefix, []) if r.get("dev") == shim_name]
        elsewhere = sorted({r.get("dev", "?") for r in seen.routes.get(prefix, [])} - {shim_name})
        if not on_shim or (iproute.family(prefix) == 4 and not any(r.get("scope") == "link" for r in on_shim)):
            found.append(f"no route {prefix} dev {shim_name} scope link" if not on_shim else
                         f"the route on {shim_name} is not scope link")
            if elsewhere:
                found.append(f"a route to it via {', '.join(elsewhere)}")
            verdicts.append(FAIL)
            first = f"# once {shim_name} is this plugin's shim again (above), if" if foreign_shim else "# if"
            fix += [f"{first} the pod still runs (if it is gone, its DEL or the runtime's GC removes this record):",
                    ip_command(iproute.replace_route(prefix, shim_name))]
        else:
            found.append(f"route on {shim_name}")
        path = seen.paths.get(address)
        if path != shim_name:
            found.append(f"the node sends to it via {path}" if path else "the node has no route to it")
            if on_shim:  # the main table is right, yet something else wins
                verdicts.append(FAIL)
                fix += [f"# a rule or another table sends {address} elsewhere: see ip route get {address}; ip rule"]
        state = seen.neighbours.get(address)
        if state:
            found.append(f"neighbour {'/'.join(state)}")
            if "FAILED" in state:
                verdicts.append(FAIL)
                fix.append(f"# the pod does not answer ARP/ND on {shim_name}: does it still run, with this address? "
                           f"(ip neigh del {address} dev {shim_name} forgets the failure)")
        if self.probe:
            found.append(self.ping(address, verdicts, fix))
        return Check(subject, worst(verdicts), ", ".join(found), tuple(fix), Docs.POD_ADDRESSES)

    def reply_paths(self, record, node):
        """Whether a pod of several interfaces answers every node address out of the interface the node reaches
        it by: for each of its interfaces' addresses, the pod's route from there to each node address (rules and
        tables included). Read in the namespace the ADD recorded, once it is known to still hold this pod (the
        record's interface with its addresses): a namespace path can be reused."""
        subject = f"pod {record.owner} reply paths"
        if not record.netns:
            return []  # a record of an older version: where the pod is, nobody told us
        if not self.runner.host.is_network_namespace(record.netns) or not self.runner.has_program("nsenter"):
            return [ok(subject, f"not read: {record.netns} is no network namespace now (or nsenter is missing)",
                       Docs.PAGE)]
        links = {obj["ifname"]: obj for obj in self.runner.read([iproute.show_addresses()], netns=record.netns)}
        held = {a["local"] for a in links.get(record.ifname, {}).get("addr_info", ())}
        if not set(routes.addresses(record.prefixes)) <= held:
            return [ok(subject, f"not read: {record.netns} holds no {record.ifname} with {record.prefixes}",
                       Docs.PAGE)]
        sources = {a["local"]: name for name, obj in links.items() if name != "lo"
                   for a in obj.get("addr_info", ()) if a.get("scope") == "global"}
        if len(set(sources.values())) < 2:
            return []  # one interface: every reply leaves by it
        targets = list(dict.fromkeys(a.local for link in node.links.values() if link.name != record.shim
                                     for a in link.global_addresses))
        asymmetric = []
        for ipv6 in (False, True):
            pairs = [(t, s) for s in sources for t in targets if (":" in s) == (":" in t) == ipv6]
            for way in self.runner.read([iproute.get_route_from(t, s) for t, s in pairs], ipv6, record.netns):
                if way.get("dev") != sources.get(way.get("from")):
                    asymmetric.append(f"to {way.get('dst')} from {way.get('from')} ({sources.get(way.get('from'))})"
                                      f" out of {way.get('dev')}")
        if not asymmetric:
            return [ok(subject, f"{', '.join(sorted(set(sources.values())))} answer the node's "
                                f"{len(targets)} address(es) out of themselves", Docs.PAGE)]
        return [Check(subject, FAIL, "the pod answers " + "; ".join(asymmetric) + ": the node drops (rp_filter) "
                      "or never gets those replies, so connections to that address fail",
                      (f"# its interfaces at {record.ifname}'s ADD got reply paths (docs/multus.md); one that came "
                       "later, or a pod attached by an older version, has none: re-create the pod, or run its "
                       f"CHECK, which names what is missing (ip -n ... rule; ip route show table all)",), Docs.PAGE)]

    def ping(self, address, verdicts, fix):
        """What one ping of `address` found; a failure appends to `verdicts` and `fix`."""
        if self.probes_left == 0:
            return f"not pinged (--probe pings at most {PROBE_LIMIT})"
        self.probes_left -= 1
        try:
            done = self.runner.query(["-c", "1", "-W", str(PROBE_WAIT), "-n", "-q", address], "ping", ok=ANY_STATUS)
        except CommandFailed as e:
            verdicts.append(WARN)
            return f"not pinged: {e}"
        if done.status == 0:
            return "answers ping"
        verdicts.append(FAIL)
        fix.append("# it does not answer: is the pod running, with this address? see the checks above")
        return f"no answer to one ping in {PROBE_WAIT} s"
