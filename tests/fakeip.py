"""A small in-memory ip(8): enough of `ip -json -d -batch`, `ip link` and `ip route` to drive the plugin's
logic without touching a kernel. Its output mimics iproute2 6.1's JSON; tests/e2e/test_fakeip_contract.py
builds the same state in a real namespace and here, and checks that the plugin reads the same from both.
"""
import ipaddress
import json
import shlex

DEFAULT_DISABLE_IPV6 = "net/ipv6/conf/default/disable_ipv6"  # what a new link starts with


class FakeHost:
    def __init__(self):
        self.links = {}
        self.routes = []  # dicts: dst (prefix), dev, protocol, scope
        self.calls = []  # every argv run
        self.failures = {}  # tuple of leading argv words -> (status, stderr)
        self.sysctls = {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"}
        self.pods = {}  # netns path -> FakeHost of that namespace (nsenter --net=PATH enters it)
        self.nft = None  # our table: None, or {"chain": bool, "rules": {handle: shim}}
        self.namespaces = {"/var/run/netns/pod1"}  # paths that are network namespaces
        self.programs = {"ip", "nft", "nsenter", "sysctl"}  # what is on PATH

    # --- building a host ---
    def add_link(self, name, kind=None, parent=None, mode=None, up=True, mtu=1500, addresses=()):
        self.links[name] = {"name": name, "kind": kind, "parent": parent, "mode": mode, "up": up, "mtu": mtu,
                            "addresses": list(addresses)}
        self.sysctls.update({f"net/ipv4/conf/{name}/arp_filter": "0", f"net/ipv6/conf/{name}/accept_ra": "1",
                             f"net/ipv4/conf/{name}/promote_secondaries": "0",
                             f"net/ipv6/conf/{name}/disable_ipv6": self.sysctls.get(DEFAULT_DISABLE_IPV6, "0")})

    def add_route(self, dst, dev, protocol=None, scope="link"):
        self.routes.append({"dst": _prefix(dst), "dev": dev, "protocol": protocol, "scope": scope})

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

    def has_program(self, name):
        return name in self.programs

    def execute(self, argv, stdin, timeout):
        if argv[0] == "nsenter":
            self.calls.append(list(argv))
            netns = argv[1][len("--net="):]
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
                               "comment": shim, "expr": _masquerade_expr(shim)}}
                     for h, shim in self.nft["rules"].items()]
            return 0, json.dumps({"nftables": [meta, {"chain": {"name": "postrouting"}}, *rules]}), ""
        if w[:2] == ["add", "table"] and w[2:] == table:
            self.nft = self.nft or {"chain": False, "rules": {}, "next": 2}
        elif w[:2] == ["add", "chain"] and w[2:5] == chain and self.nft:
            self.nft["chain"] = True
        elif w[:2] == ["add", "rule"] and w[2:5] == chain and self.nft and self.nft["chain"]:
            assert w[5:11] == ["iifname", w[6], "ct", "status", "dnat", "masquerade"], w
            self.nft["rules"][self.nft["next"]] = w[12].strip('"')
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
        if words[:4] == ["route", "show", "to", "exact"]:
            want = _prefix(words[4])
            if ipaddress.ip_network(want).version != (6 if ipv6 else 4):
                return []  # as the real ip: the batch's family decides
            return [self._route_json(r) for r in self.routes if r["dst"] == want]
        if words == ["route", "show", "table", "main"]:
            return [self._route_json(r) for r in self.routes
                    if r["dst"] != "default" and ipaddress.ip_network(r["dst"]).version == (6 if ipv6 else 4)]
        if words[:3] == ["route", "show", "default"]:
            return [self._route_json(r) for r in self.routes if r["dst"] == "default"]
        raise AssertionError(f"fake ip cannot show {words}")

    def _change(self, w):
        if w[:3] == ["link", "add", "name"] and w[3:] == [w[3], "link", w[5], "type", "macvlan", "mode", "bridge"]:
            w = w[:2] + w[3:]  # the name's keyword, as ip drops it
            if w[2] in self.links:
                raise LookupError("RTNETLINK answers: File exists")
            master = self._link(w[4])
            lower = master["parent"] if master["kind"] == "macvlan" else w[4]  # as the kernel: on the real lower
            self.add_link(w[2], kind="macvlan", parent=lower, mode="bridge", up=False, mtu=master["mtu"])
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

    def _link(self, name):
        if name not in self.links:
            raise LookupError(f'Device "{name}" does not exist.')
        return self.links[name]

    def _link_json(self, link):
        obj = {"ifindex": list(self.links).index(link["name"]) + 2, "ifname": link["name"],
               "flags": ["BROADCAST", "MULTICAST"] + (["UP", "LOWER_UP"] if link["up"] else []),
               "mtu": link["mtu"], "operstate": "UP" if link["up"] else "DOWN"}
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
    def _route_json(route):
        dst = route["dst"]
        net = None if dst == "default" else ipaddress.ip_network(dst)
        if net is not None and net.prefixlen == 0:
            shown = "default"  # as the real ip prints any /0
        else:
            shown = dst if net is None or net.prefixlen != net.max_prefixlen else str(net.network_address)
        obj = {"type": "unicast", "dst": shown, **({"gateway": route["gateway"]} if "gateway" in route else {}),
               "dev": route["dev"]}
        obj["protocol"] = route["protocol"] or "unspec"  # with -d, ip always names it; netlink's default is 0
        obj["scope"] = route["scope"] if net is None or net.version == 4 else "global"
        obj["flags"] = []
        return obj


def _masquerade_expr(shim):
    """The rule `iifname SHIM ct status dnat masquerade` as nft 1.0.6 lists it with -j."""
    return [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": shim}},
            {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
            {"masquerade": None}]


def _prefix(text):
    return text if text == "default" else str(ipaddress.ip_network(text, strict=False))
