"""A small in-memory ip(8): enough of `ip -json -d -batch`, `ip link` and `ip route` to drive the plugin's
logic without touching a kernel. Its output mimics iproute2 6.1's JSON; tests/e2e/test_fakeip_contract.py
builds the same state in a real namespace and here, and checks that the plugin reads the same from both.
"""
import errno
import ipaddress
import itertools
import json
import shlex

_NAMESPACE_NUMBERS = itertools.count()
DEFAULT_DISABLE_IPV6 = "net/ipv6/conf/default/disable_ipv6"  # what a new link starts with


class FakeHost:
    def __init__(self):
        self.links = {}
        self.routes = []  # dicts: dst (prefix), dev, protocol, scope, table; gateway, onlink, metric
        self.rules = []  # dicts: src (address), table (str), priority
        self.neighbours = []  # dicts: dst (address), dev, lladdr, state
        self.calls = []  # every argv run
        self.failures = {}  # tuple of leading argv words -> (status, stderr)
        self.sysctls = {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"}
        self.pods = {}  # netns path -> FakeHost of that namespace (nsenter --net=PATH enters it)
        self.nft = None  # our table: None, or {"chain": bool, "rules": {handle: comment}, "sets": {name}}
        self.namespaces = {"/var/run/netns/pod1"}  # paths that are network namespaces
        self.namespace_ids = {}  # path -> its namespace's identity (namespace_id)
        self.programs = {}  # other programs (route doctor's): name -> function(args) -> (status, stdout, stderr)
        self.in_node_namespace = True
        self.on_path = {"ip", "nft", "nsenter", "sysctl"}  # what has_program finds

    # --- building a host ---
    def add_link(self, name, kind=None, parent=None, mode=None, up=True, mtu=1500, addresses=(), mac=None,
                 permanent_mac=None):
        """A link; its MAC is `mac`, else one made from its name (a NIC's burnt-in one: permanent_mac)."""
        mac = mac or "02:" + ":".join(f"{b:02x}" for b in name.encode().ljust(5, b"\0")[:5])
        self.links[name] = {"name": name, "kind": kind, "parent": parent, "mode": mode, "up": up, "mtu": mtu,
                            "addresses": list(addresses), "mac": mac, "permanent_mac": permanent_mac}
        self.sysctls.update({f"net/ipv4/conf/{name}/arp_filter": "0", f"net/ipv6/conf/{name}/accept_ra": "1",
                             f"net/ipv4/conf/{name}/promote_secondaries": "0",
                             f"net/ipv6/conf/{name}/disable_ipv6": self.sysctls.get(DEFAULT_DISABLE_IPV6, "0")})

    def delete_link(self, name):
        """As `ip link del`: the link's routes and neighbour entries go with it."""
        del self.links[name]
        self.routes = [r for r in self.routes if r["dev"] != name]
        self.neighbours = [n for n in self.neighbours if n["dev"] != name]

    def add_neighbour(self, dst, dev, lladdr="02:00:00:00:00:99", state="REACHABLE"):
        self.neighbours.append({"dst": dst, "dev": dev, "lladdr": lladdr, "state": state})

    def add_route(self, dst, dev, protocol=None, scope="link", gateway=None, nexthops=(), table="main"):
        """A route; `nexthops` [(gateway, dev)] makes it multipath (then without `dev`). IPv6 defaults: "::/0"."""
        route = {"dst": _prefix(dst), "dev": dev, "protocol": protocol, "scope": scope, "table": table}
        if (gateway or nexthops) and _version(route["dst"]) == 4:
            assert scope == "global", "the kernel refuses an IPv4 route with a next hop and any other scope"
        if gateway:
            route["gateway"] = gateway
        if nexthops:
            route["nexthops"] = [{"gateway": g, "dev": d} for g, d in nexthops]
        self.routes.append(route)

    def routes_on(self, dev):
        return sorted(r["dst"] for r in self.routes if r["dev"] == dev)

    def addresses_of(self, name):
        return sorted(self.links[name]["addresses"])

    def changes(self):
        """The argv of every state-changing call, in order."""
        return [argv for argv in self.calls if "-batch" not in argv and "list" not in argv]

    def link_changes(self):
        """The changes, without sysctl writes."""
        return [argv for argv in self.changes() if argv[0] == "ip"]

    # --- what the Runner calls ---
    def read_sysctl(self, key):
        return self.sysctls.get(key)

    def write_sysctl(self, key, value):
        self.calls.append(["sysctl", "-w", f"{key}={value}"])
        if key not in self.sysctls:
            raise FileNotFoundError(key)
        self.sysctls[key] = value

    def pod(self, netns, ifname="eth0", addresses=()):
        """A pod namespace at path `netns` with one interface."""
        pod = FakeHost()
        pod.add_link(ifname, addresses=addresses)
        self.pods[netns] = pod
        self.namespaces.add(netns)
        return pod

    def is_network_namespace(self, path):
        return path in self.namespaces

    def namespace_id(self, path, like=None):
        try:
            return self.identify_namespace(path, like)
        except OSError:
            return None

    def identify_namespace(self, path, like=None):
        """A namespace's identity, as a cookie or (`like` one of the old form) DEVICE:INODE; a test that re-makes
        one at the same path gives it a new one (renew)."""
        if path not in self.namespaces:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if path not in self.namespace_ids:
            self.namespace_ids[path] = next(_NAMESPACE_NUMBERS)
        number = self.namespace_ids[path]
        return f"4:{4026531000 + number}" if like and not like.startswith("cookie:") else f"cookie:{4096 + number}"

    def in_nodes_network_namespace(self):
        return self.in_node_namespace

    def has_program(self, name):
        return name in self.on_path

    def execute(self, argv, stdin, timeout, limit=None):
        if "-batch" in argv and "-json" not in argv:  # changes: recorded one a line, as the log has them
            ip = [word for word in argv[:argv.index("-batch")] if word != "-force"]
            self.calls.extend([*ip, *shlex.split(line)] for line in stdin.splitlines())
            host = self.pods.get(argv[1][len("--net="):]) if argv[0] == "nsenter" else self
            if host is None:
                return 1, "", "nsenter: cannot open the namespace: No such file or directory\n"
            return host._change_batch(stdin, "-force" in argv, "-6" in argv)
        if argv[0] in self.programs:
            self.calls.append(list(argv))
            return self.programs[argv[0]](list(argv[1:]))
        if argv[0] == "nsenter":
            self.calls.append(list(argv))
            netns = argv[1][len("--net="):]
            if netns in self.namespaces and netns not in self.pods:  # a namespace nobody filled: just lo
                self.pods[netns] = FakeHost()
            if netns not in self.pods:
                return 1, "", f"nsenter: cannot open {netns}: No such file or directory\n"
            return self.pods[netns].execute(argv[2:], stdin, timeout)
        if argv[0] == "nft":
            self.calls.append(list(argv))
            return self._nft(argv[1:])
        if argv[:2] == ["sysctl", "-w"]:  # as replay runs it
            key, value = argv[2].split("=", 1)
            self.write_sysctl(key, value)
            return 0, "", ""
        self.calls.append(list(argv))
        assert argv[0] == "ip", argv
        args, ipv6 = list(argv[1:]), False
        while args and args[0].startswith("-"):
            option = args.pop(0)
            ipv6 = ipv6 or option == "-6"
            if option == "-batch":
                args.pop(0)
                return self._batch(stdin, ipv6)
        for prefix, (status, err) in self.failures.items():
            if tuple(args[:len(prefix)]) == prefix:
                return status, "", err
        try:
            self._change(args)
        except LookupError as e:
            return 2, "", str(e) + "\n"
        return 0, "", ""

    def _batch(self, script, ipv6):
        out, err, status = [], [], 0
        for n, line in enumerate(script.splitlines(), 1):
            try:
                out.append(json.dumps(self._show(shlex.split(line), ipv6)))
            except LookupError as e:
                err.append(f"{e}\nCommand failed -:{n}")
                status = 1
        return status, "\n".join(out) + ("\n" if out else ""), "\n".join(err) + ("\n" if err else "")

    def _change_batch(self, script, force, ipv6=False):
        """Changes, one a line, as ip runs them: it stops at the first that fails, unless forced."""
        err, status = [], 0
        for n, line in enumerate(script.splitlines(), 1):
            words = shlex.split(line)
            try:
                for prefix, (_, message) in self.failures.items():
                    if tuple(words[:len(prefix)]) == prefix:
                        raise LookupError(message.strip())
                self._change(words, ipv6)
            except LookupError as e:
                err.append(f"{e}\nCommand failed -:{n}")
                status = 1
                if not force:
                    break
        return status, "", "".join(e + "\n" for e in err)

    def _nft(self, w):
        table, chain = ["inet", "cni_route"], ["inet", "cni_route", "postrouting"]
        meta = {"metainfo": {"version": "1.0.6"}}
        if w == ["-j", "list", "tables"]:
            tables = [{"table": {"family": "inet", "name": "cni_route", "handle": 1}}] if self.nft else []
            return 0, json.dumps({"nftables": [meta, *tables]}), ""
        if w[:3] == ["-j", "list", "chain"] and w[3:] == chain:
            if not (self.nft and self.nft["chain"]):
                return 1, "", "Error: No such file or directory\n"
            rules = [{"rule": {"family": "inet", "table": "cni_route", "chain": "postrouting", "handle": h,
                               "comment": comment, "expr": _masquerade_expr(*comment.split(" "))}}
                     for h, comment in self.nft["rules"].items()]
            return 0, json.dumps({"nftables": [meta, {"chain": {"name": "postrouting"}}, *rules]}), ""
        if w[:2] == ["add", "table"] and w[2:] == table:
            self.nft = self.nft or {"chain": False, "rules": {}, "sets": set(), "next": 2}
        elif w[:2] == ["add", "chain"] and w[2:5] == chain and self.nft:
            self.nft["chain"] = True
        elif w[:2] == ["add", "set"] and w[2:4] == table and self.nft:
            assert w[4] in ("equal4", "equal6") and "dynamic,timeout" in w[5], w
            self.nft["sets"].add(w[4])
        elif w[:2] == ["add", "rule"] and w[2:5] == chain and self.nft and self.nft["chain"]:
            assert w[5] == "iifname" and w[-3:-1] == ["masquerade", "comment"], w
            used = {word[1:] for word in w if word.startswith("@")}
            assert used <= self.nft["sets"], f"rule uses a set that does not exist: {w}"
            self.nft["rules"][self.nft["next"]] = w[-1].strip('"')
            self.nft["next"] += 1
        elif w[:2] == ["delete", "rule"] and w[2:5] == chain and self.nft and int(w[6]) in self.nft["rules"]:
            del self.nft["rules"][int(w[6])]
        elif w[:2] == ["delete", "table"] and w[2:] == table and self.nft:
            self.nft = None
        else:
            return 1, "", f"Error: fake nft cannot {w}\n"
        return 0, "", ""

    def _show(self, words, ipv6):
        if words[:3] == ["addr", "show", "dev"]:
            return [self._link_json(self._link(words[3]))]
        if words == ["addr", "show"]:
            return [self._link_json(link) for link in self.links.values()]
        if words == ["route", "show", "table", "all", "scope", "global"]:  # both families, as ip shows table all
            return [self._route_json(r, with_table=True) for r in self.routes
                    if r["scope"] == "global" or _version(r["dst"]) == 6]  # (every IPv6 route is scope global)
        if words == ["route", "show", "table", "all", "default", "scope", "link"]:
            return [self._route_json(r, with_table=True) for r in self.routes
                    if r["dst"] == "default" and r["scope"] == "link"]
        if words[:4] == ["route", "show", "to", "exact"]:
            want = _prefix(words[4])
            if ipaddress.ip_network(want).version != (6 if ipv6 else 4):
                return []  # as the real ip: the batch's family decides
            return [self._route_json(r) for r in self._main() if r["dst"] == want]
        if words == ["route", "show", "table", "main"]:
            return [self._route_json(r) for r in self._main()
                    if r["dst"] != "default" and ipaddress.ip_network(r["dst"]).version == (6 if ipv6 else 4)]
        if words[:3] == ["route", "show", "default"]:
            return [self._route_json(r) for r in self._main() if r["dst"] == "default"]
        if words == ["route", "show", "table", "main", "proto", "201"]:  # the kernel filters: ip leaves the field out
            return [{k: v for k, v in self._route_json(r).items() if k != "protocol"} for r in self._main()
                    if r["protocol"] == "201" and _version(r["dst"]) == (6 if ipv6 else 4)]
        if words[:3] == ["route", "show", "table"] and len(words) == 4 and words[3].isdigit():
            return [self._route_json(r) for r in self.routes
                    if r.get("table") == words[3] and _version(r["dst"]) == (6 if ipv6 else 4)]
        if words[:3] == ["rule", "show", "pref"] and len(words) == 4:
            return [{"priority": r["priority"], "src": r["src"], "table": r["table"]} for r in self.rules
                    if (":" in r["src"]) == ipv6 and r["priority"] == int(words[3])]
        if words[:2] == ["route", "get"] and words[3:4] == ["oif"]:  # the longest match out of that device
            address = ipaddress.ip_address(words[2])
            matching = [r for r in self._main() if r["dev"] == words[4] and (r["dst"] == "default" or address in
                                                                             ipaddress.ip_network(r["dst"]))
                        and _version(r["dst"]) == address.version]
            best = max(matching, default=None,
                       key=lambda r: -1 if r["dst"] == "default" else ipaddress.ip_network(r["dst"]).prefixlen)
            self._link(words[4])
            return [{"dst": words[2], **({"gateway": best["gateway"]} if best and "gateway" in best else {}),
                     "dev": words[4]}]  # no route: the kernel takes the address to be on the link
        if words == ["route", "show", "table", "all"]:  # route remove's read of the node
            return [self._route_json(r, with_table=True) for r in self.routes]
        if words == ["rule", "show"]:
            rules = [{"priority": 0, "src": "all", "table": "local"}, *(
                {"priority": r["priority"], "src": r["src"], "table": r["table"]} for r in self.rules
                if (":" in r["src"]) == ipv6), {"priority": 32766, "src": "all", "table": "main"}]
            return rules + ([] if ipv6 else [{"priority": 32767, "src": "all", "table": "default"}])
        if words[:2] == ["route", "get"] and len(words) == 3:  # the longest match of the main table
            address = ipaddress.ip_address(words[2])
            matching = [r for r in self._main() if r["dst"] != "default" and address in ipaddress.ip_network(r["dst"])]
            best = max(matching, key=lambda r: ipaddress.ip_network(r["dst"]).prefixlen, default=None)
            return [{"dst": words[2], "dev": best["dev"]}] if best else []
        if words[:3] == ["neigh", "show", "to"] and len(words) == 4:
            return [{"dst": n["dst"], "dev": n["dev"], "lladdr": n["lladdr"], "state": [n["state"]]}
                    for n in self.neighbours if n["dst"] == words[3]]
        raise AssertionError(f"fake ip cannot show {words}")

    def _main(self):
        """What ip shows without `table`: the main table."""
        return [r for r in self.routes if r.get("table", "main") == "main"]

    def _change(self, w, ipv6=False):
        if w[:3] == ["route", "flush", "table"]:
            assert w[4:] == ["proto", "201"], w  # the kernel filters a flush by protocol
            self.routes = [r for r in self.routes if r.get("table") != w[3] or r["protocol"] != w[5]
                           or _version(r["dst"]) != (6 if ipv6 else 4)]
            return
        if w[:3] == ["link", "add", "name"] and w[4] == "link" and w[-4:] == ["type", "macvlan", "mode", "bridge"]:
            w = w[:2] + w[3:]  # the name's keyword, as ip drops it
            mac = w[6] if w[5:6] == ["address"] else None
            assert len(w) == (11 if mac else 9), w
            if w[2] in self.links:
                raise LookupError("RTNETLINK answers: File exists")
            master = self._link(w[4])
            lower = master["parent"] if master["kind"] == "macvlan" else w[4]  # as the kernel: on the real lower
            self.add_link(w[2], kind="macvlan", parent=lower, mode="bridge", up=False, mtu=master["mtu"], mac=mac)
        elif w[:2] == ["neigh", "del"] and w[3] == "dev":
            match = [n for n in self.neighbours if (n["dst"], n["dev"]) == (w[2], w[4])]
            if not match:
                raise LookupError("RTNETLINK answers: No such file or directory")
            self.neighbours.remove(match[0])
        elif w[:3] == ["link", "del", "dev"] and len(w) == 4:
            self._link(w[3])
            self.delete_link(w[3])
        elif w[:3] == ["link", "set", "dev"] and w[4:] == ["up"]:
            self._link(w[3])["up"] = True
        elif w[:3] == ["link", "set", "dev"] and w[4] == "mtu":
            self._link(w[3])["mtu"] = int(w[5])
        elif w[:2] == ["addr", "add"] and w[3] == "dev" and "noprefixroute" in w[5:]:
            link = self._link(w[4])
            if w[2] in link["addresses"]:
                raise LookupError("RTNETLINK answers: File exists")
            assert ("nodad" in w) == (":" in w[2]), w
            link["addresses"].append(w[2])
        elif w[:2] == ["addr", "del"] and w[3] == "dev":
            link = self._link(w[4])
            if w[2] not in link["addresses"]:
                raise LookupError("RTNETLINK answers: Cannot assign requested address")
            link["addresses"].remove(w[2])
        elif w[:2] in (["rule", "add"], ["rule", "del"]):
            assert w[2::2] == ["from", "lookup", "pref"] and len(w) == 8, w
            rule = {"src": w[3], "table": w[5], "priority": int(w[7])}
            if (rule in self.rules) == (w[1] == "add"):
                raise LookupError("RTNETLINK answers: " + ("File exists" if w[1] == "add" else "No such process"))
            (self.rules.append if w[1] == "add" else self.rules.remove)(rule)
        elif w[:2] in (["route", "replace"], ["route", "del"]) and "table" in w:
            self._table_route(w)
        elif w[:2] == ["route", "replace"] and w[3] == "via":
            self._link(w[6])
            dst = _prefix(w[2])
            self.routes = [r for r in self.routes if r["dst"] != dst]
            self.routes.append({"dst": dst, "dev": w[6], "gateway": w[4], "protocol": w[8], "scope": "global"})
        elif w[:2] == ["route", "del"] and w[3] == "via":
            match = [r for r in self.routes if (r["dst"], r.get("gateway"), r["dev"]) == (_prefix(w[2]), w[4], w[6])]
            if not match:
                raise LookupError("RTNETLINK answers: No such process")
            self.routes.remove(match[0])
        elif w[:2] == ["route", "replace"]:
            self._link(w[4])
            dst = _prefix(w[2])
            self.routes = [r for r in self.routes if r["dst"] != dst]
            self.add_route(dst, w[4], protocol=w[w.index("proto") + 1], scope=w[w.index("scope") + 1])
        elif w[:2] == ["route", "del"]:
            dst, dev, proto = _prefix(w[2]), w[4], w[6]
            match = [r for r in self.routes if (r["dst"], r["dev"], r["protocol"]) == (dst, dev, proto)]
            if not match:
                raise LookupError("RTNETLINK answers: No such process")
            self.routes.remove(match[0])
        else:
            raise AssertionError(f"fake ip cannot run {w}")

    def _table_route(self, w):
        """`route replace|del DST [via GW] dev DEV [onlink|scope link] [metric M] table T proto P` (pod_routes)."""
        words = dict(zip(w[3::2], w[4::2])) if "onlink" not in w else dict(zip(w[3:7:2], w[4:7:2])) | dict(
            zip(w[8::2], w[9::2]))
        route = {"dst": _prefix(w[2]), "dev": words["dev"], "protocol": words["proto"], "table": words["table"],
                 "scope": "global" if "via" in words else words["scope"]}
        self._link(route["dev"])
        if "via" in words:
            route["gateway"] = words["via"]
        if "onlink" in w:
            route["onlink"] = True
        if "metric" in words:
            route["metric"] = int(words["metric"])
        same = [r for r in self.routes if (r["dst"], r.get("table")) == (route["dst"], route["table"])]
        if w[1] == "replace":
            self.routes = [r for r in self.routes if r not in same] + [route]
        elif route in same:
            self.routes.remove(route)
        else:
            raise LookupError("RTNETLINK answers: No such process")

    def _link(self, name):
        if name not in self.links:
            raise LookupError(f'Device "{name}" does not exist.')
        return self.links[name]

    def _link_json(self, link):
        obj = {"ifindex": list(self.links).index(link["name"]) + 2, "ifname": link["name"],
               "flags": ["BROADCAST", "MULTICAST"] + (["UP", "LOWER_UP"] if link["up"] else []),
               "mtu": link["mtu"], "operstate": "UP" if link["up"] else "DOWN", "link_type": "ether",
               "address": link["mac"]}
        if link["permanent_mac"] and link["permanent_mac"] != link["mac"]:
            obj["permaddr"] = link["permanent_mac"]
        if link["parent"]:
            obj["link"] = link["parent"]
        if link["kind"]:
            obj["linkinfo"] = {"info_kind": link["kind"]}
            if link["mode"]:
                obj["linkinfo"]["info_data"] = {"mode": link["mode"]}
        obj["addr_info"] = [{"family": "inet6" if ":" in a else "inet", "local": a.split("/")[0],
                             "prefixlen": int(a.split("/")[1]),
                             "scope": "link" if a.startswith("fe80:") else "global"} for a in link["addresses"]]
        return obj

    @staticmethod
    def _route_json(route, with_table=False):
        dst = route["dst"]
        net = None if dst == "default" else ipaddress.ip_network(dst)
        if net is not None and net.prefixlen == 0:
            shown = "default"  # as the real ip prints any /0
        else:
            shown = dst if net is None or net.prefixlen != net.max_prefixlen else str(net.network_address)
        obj = {"type": "unicast", "dst": shown, **({"gateway": route["gateway"]} if "gateway" in route else {}),
               "dev": route["dev"]}
        if with_table:  # as ip -d prints it when asked for every table
            obj["table"] = route.get("table", "main")
        obj["protocol"] = route["protocol"] or "unspec"  # with -d, ip always names it; netlink's default is 0
        obj["scope"] = route["scope"] if net is None or net.version == 4 else "global"
        if "metric" in route:
            obj["metric"] = route["metric"]
        elif net is not None and net.version == 6:
            obj["metric"] = 1024  # what the kernel gives an IPv6 route added without one
        obj["flags"] = ["onlink"] if route.get("onlink") else []
        if route.get("nexthops"):
            del obj["dev"]
            obj["nexthops"] = [{**hop, "weight": 1, "flags": []} for hop in route["nexthops"]]
        if net is not None and net.version == 6:
            obj["pref"] = "medium"  # every IPv6 route has a router preference
        return obj


def _masquerade_expr(shim, proto=None):
    """A rule of ours as nft 1.0.6 lists it with -j, by its comment: "SHIM ip" / "SHIM ip6" (see nft.py), or
    a bare "SHIM", an older version's `iifname SHIM ct status dnat masquerade`."""
    if proto is None:
        return [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": shim}},
                {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                {"masquerade": None}]
    equal = "@equal4" if proto == "ip" else "@equal6"
    reply = {"ct": {"key": f"{proto} saddr", "dir": "reply"}}
    return [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": shim}},
            {"set": {"op": "add", "elem": {"concat": [reply, reply]}, "set": equal}},
            {"match": {"op": "!=", "left": {"concat": [{"ct": {"key": f"{proto} daddr", "dir": "original"}}, reply]},
                       "right": equal}},
            {"masquerade": None}]


def _version(prefix):
    return 4 if prefix == "default" else ipaddress.ip_network(prefix).version


def _prefix(text):
    return text if text == "default" else str(ipaddress.ip_network(text, strict=False))
