#!/usr/bin/env python3
"""Latency of the route plugin, side by side with another chained route plugin (e.g. the seed's Go one).

The bed is the end-to-end tests' throw-away topology (tests/netns.py): a node namespace whose eno1 is one
end of a veth pair. Each plugin is invoked as a runtime invokes it (`ip netns exec NODE env -i CNI_... PLUGIN`,
config with prevResult on stdin), alternating plugins so that drift on the machine hits both alike.

  tools/bench.py [--plugin bin/route] [--vs PATH | --vs-seed] [--n 40] [--routes 1000] [--parallel 64]
                 [--json bench-results.json]

Reports ADD, DEL and CHECK median and p90, the same with --routes other pod routes on the shim, and the wall
time of --parallel concurrent ADDs with the routes present afterwards. Needs root.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import netns  # noqa: E402

SEED_BUILD = os.path.join(REPO, "..", "shared", "anchors", "build.sh")


def conf(ip, state_dir, verb_version="1.0.0"):
    return json.dumps({
        "cniVersion": verb_version, "name": "bench", "type": "route", "master": "eno1", "bridge": "eno1.host",
        "stateDir": state_dir,
        "prevResult": {"cniVersion": verb_version,
                       "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"}],
                       "ips": [{"interface": 0, "address": ip + "/16", "gateway": "192.168.0.1"}]}})


class Bed:
    def __init__(self, state_dir):
        self.topo = netns.Topology()
        self.state_dir = state_dir

    def call(self, plugin, verb, ip, container_id):
        argv = netns.plugin_argv(self.topo.node, plugin, verb, container_id=container_id)
        started = time.perf_counter()
        proc = subprocess.run(argv, input=conf(ip, self.state_dir), capture_output=True, text=True)
        elapsed = (time.perf_counter() - started) * 1000
        if proc.returncode != 0:
            raise SystemExit(f"{plugin} {verb} {ip} failed: {proc.stdout[:300]} {proc.stderr[-300:]}")
        return elapsed

    def fill(self, count):
        """`count` unrelated pod routes on the shim, as if that many pods were running."""
        lines = "".join(f"route replace 10.{200 + i // 65536}.{i // 256 % 256}.{i % 256}/32 dev eno1.host scope link\n"
                        for i in range(count))
        subprocess.run(["ip", "-n", self.topo.node, "-batch", "-"], input=lines, text=True, check=True)

    def routes_present(self, ips):
        out = subprocess.run(["ip", "-n", self.topo.node, "-json", "route", "show", "dev", "eno1.host"],
                             capture_output=True, text=True, check=True).stdout
        have = {r["dst"] for r in json.loads(out)}
        return sum(ip in have for ip in ips)


def stats(samples):
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 2), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2)}


def series(bed, plugins, n, tag):
    """n rounds of ADD, CHECK, DEL per plugin, interleaved."""
    times = {p: {"ADD": [], "CHECK": [], "DEL": []} for p in plugins}
    for i in range(n):
        for j, plugin in enumerate(plugins):
            ip, cid = f"192.168.{10 + j}.{i % 250 + 2}", f"{tag}-{j}-{i}"
            for verb in ("ADD", "CHECK", "DEL"):
                times[plugin][verb].append(bed.call(plugin, verb, ip, cid))
    return {p: {verb: stats(v) for verb, v in t.items()} for p, t in times.items()}


def parallel(bed, plugin, count, tag):
    ips = [f"192.168.100.{i + 2}" if i < 250 else f"192.168.101.{i - 248}" for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda k: bed.call(plugin, "ADD", ips[k], f"{tag}{k}"), range(count)))
    wall = (time.perf_counter() - started) * 1000
    present = bed.routes_present(ips)
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda k: bed.call(plugin, "DEL", ips[k], f"{tag}{k}"), range(count)))
    return {"wall_ms": round(wall), "routes_present": present, "of": count}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugin", default=os.path.join(REPO, "bin", "route"))
    parser.add_argument("--vs", help="another chained route plugin to measure alongside")
    parser.add_argument("--vs-seed", action="store_true", help="build the seed's Go plugin and measure it")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--json", default="bench-results.json")
    args = parser.parse_args()
    other = args.vs
    if args.vs_seed:
        other = subprocess.run(["bash", SEED_BUILD], capture_output=True, text=True, check=True).stdout.split()[-1]
    plugins = [os.path.abspath(args.plugin)] + ([os.path.abspath(other)] if other else [])
    names = {p: os.path.basename(p) if p != plugins[0] or len(plugins) == 1 else "route" for p in plugins}
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}, "
              f"{os.cpu_count()} cores, kernel {platform.release()}", "python": sys.version.split()[0],
              "plugins": plugins, "n": args.n}
    import tempfile
    with tempfile.TemporaryDirectory() as state_dir:
        bed = Bed(state_dir)
        try:
            for j, p in enumerate(plugins):
                bed.call(p, "ADD", f"192.168.9.{j + 1}", f"warm{j}")  # creates the shim; not measured
            report["routes=0"] = series(bed, plugins, args.n, "r0")
            bed.fill(args.routes)
            report[f"routes={args.routes}"] = series(bed, plugins, args.n, "rN")
            report[f"parallel={args.parallel}"] = {p: parallel(bed, p, args.parallel, f"par{j}-")
                                                    for j, p in enumerate(plugins)}
        finally:
            bed.topo.close()
    print(f"{report['date']}  {report['machine']}  python {report['python']}  n={args.n}")
    print(f"{'':14} {'':8} {'ADD med':>8} {'p90':>7} {'CHECK med':>10} {'p90':>7} {'DEL med':>8} {'p90':>7}")
    for key in ("routes=0", f"routes={args.routes}"):
        for p in plugins:
            r = report[key][p]
            print(f"{key:14} {names[p]:8} {r['ADD']['median']:8.1f} {r['ADD']['p90']:7.1f} {r['CHECK']['median']:10.1f}"
                  f" {r['CHECK']['p90']:7.1f} {r['DEL']['median']:8.1f} {r['DEL']['p90']:7.1f}")
    for p in plugins:
        par = report[f"parallel={args.parallel}"][p]
        print(f"parallel={args.parallel:<5} {names[p]:8} wall {par['wall_ms']} ms, routes present "
              f"{par['routes_present']}/{par['of']}")
    mine = plugins[0]
    flat = report[f"routes={args.routes}"][mine]["ADD"]["median"] / report["routes=0"][mine]["ADD"]["median"]
    report["ratios"] = {"add_with_routes_over_add": round(flat, 2)}
    print(f"ADD with {args.routes} routes / ADD with none (route): {flat:.2f}  (target <= 1.3)")
    if other:
        ratio = report["routes=0"][mine]["ADD"]["median"] / report["routes=0"][plugins[1]]["ADD"]["median"]
        report["ratios"]["add_over_other"] = round(ratio, 2)
        print(f"ADD median route / {names[plugins[1]]}: {ratio:.1f}x  (target <= 20x, aim 5x)")
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
