#!/usr/bin/env python3
"""Latency and CPU of the route plugin, side by side with another chained route plugin (e.g. the seed's Go one).

The bed is the end-to-end tests' throw-away topology (tests/beds/topology.py): a node namespace whose eno1 is one
end of a veth pair. Each plugin is invoked as a runtime invokes it (`ip netns exec NODE env -i PATH=<node's>
CNI_... PLUGIN`, config with prevResult on stdin), alternating plugins so that drift on the machine hits both
alike. What is measured by default is what a node runs: the one-file build, built here for the node's python3
(the first on the node's PATH) by tools/build_dist.py.

  tools/bench.py [--plugin FILE] [--vs PATH | --vs-seed] [--n 40] [--routes 1000] [--parallel 64]
                 [--parallel-runs 3] [--json bench-results.json]

Reports, per verb (ADD, CHECK, DEL), the median and p90 of the wall time and the median CPU time (user + system
of the whole call: launcher, interpreter and the ip processes it runs): with no other pod, with --routes other
IPv4 pod routes on the shim, and on a dual-stack shim with --routes other IPv6 pods (each call's pod then has an
IPv4 and an IPv6 address); --parallel concurrent ADDs (before the IPv6 pods), --parallel-runs times in a row:
wall time, CPU per call, routes present afterwards. Needs root.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from beds import libcni, runtime, topology  # noqa: E402

# The seed's build script, in the shared/ beside the clone (or beside the directory of worktrees that holds it).
SEED_BUILD = next((path for path in (os.path.join(REPO, *[".."] * up, "shared", "anchors", "build.sh") for up in (1, 2))
                   if os.path.exists(path)), os.path.join(REPO, "..", "shared", "anchors", "build.sh"))
BUILD_DIST = os.path.join(REPO, "tools", "build_dist.py")
TARGET, AIM = 6, 5  # route / seed, each verb's median
PARALLEL_TARGET = 8  # route / seed, the wall time of --parallel ADDs at once, in every run
VERBS = ("ADD", "CHECK", "DEL")


def conf(ip, state_dir, verb_version="1.0.0"):
    """The chained config of a pod at `ip`, an IPv4 address or "IPv4,IPv6" for a dual-stack pod."""
    ips = [{"interface": 0, "address": address + ("/64" if ":" in address else "/16"),
            "gateway": "fd00::1" if ":" in address else "192.168.0.1"} for address in ip.split(",")]
    return json.dumps({
        "cniVersion": verb_version, "name": "bench", "type": "route", "master": "eno1", "bridge": "eno1.host",
        "stateDir": state_dir,
        "prevResult": {"cniVersion": verb_version,
                       "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"}],
                       "ips": ips}})


def children_cpu_ms():
    """User + system time of every finished child (and theirs) so far, in ms."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


class Bed:
    def __init__(self, state_dir):
        self.topo = topology.Topology()
        self.state_dir = state_dir

    def call(self, plugin, verb, ip, container_id):
        """(wall ms, CPU ms) of one call. The CPU is exact only while no other call runs (see `parallel`)."""
        argv = libcni.plugin_argv(self.topo.node, plugin, verb, container_id=container_id)
        cpu, started = children_cpu_ms(), time.perf_counter()
        proc = subprocess.run(argv, input=conf(ip, self.state_dir), capture_output=True, text=True)
        elapsed, cpu = (time.perf_counter() - started) * 1000, children_cpu_ms() - cpu
        if proc.returncode != 0:
            raise SystemExit(f"{plugin} {verb} {ip} failed: {proc.stdout[:300]} {proc.stderr[-300:]}")
        return elapsed, cpu

    def launch_overhead(self, n):
        """What `ip netns exec NODE env -i ...` costs before any plugin runs: (wall ms, CPU ms) medians."""
        samples = [self.call("/bin/true", "VERSION", "", "") for _ in range(n)]
        return [round(statistics.median(s), 2) for s in zip(*samples)]

    def fill(self, count, ipv6=False):
        """`count` unrelated pod routes on the shim, as if that many pods were running (IPv6 pods: /128 routes,
        all of scope global, as the plugin makes them)."""
        if ipv6:
            lines = "".join(f"route replace fd00:200::{i // 65536:x}:{i % 65536:x}/128 dev eno1.host proto 201\n"
                            for i in range(count))
        else:
            lines = "".join(f"route replace 10.{200 + i // 65536}.{i // 256 % 256}.{i % 256}/32 dev eno1.host "
                            "scope link\n" for i in range(count))
        subprocess.run(["ip", "-n", self.topo.node, *(["-6"] if ipv6 else []), "-batch", "-"], input=lines,
                       text=True, check=True)

    def routes_present(self, ips):
        out = subprocess.run(["ip", "-n", self.topo.node, "-json", "route", "show", "dev", "eno1.host"],
                             capture_output=True, text=True, check=True).stdout
        have = {r["dst"] for r in json.loads(out)}
        return sum(ip in have for ip in ips)


def stats(samples):
    walls, cpus = sorted(s[0] for s in samples), [s[1] for s in samples]
    return {"median": round(statistics.median(walls), 2), "p90": round(walls[int(0.9 * (len(walls) - 1))], 2),
            "cpu": round(statistics.median(cpus), 2)}


def series(bed, plugins, n, tag, dual_stack=False):
    """n rounds of ADD, CHECK, DEL per plugin, interleaved; `dual_stack`: pods with an IPv6 address too."""
    times = {p: {verb: [] for verb in VERBS} for p in plugins}
    for i in range(n):
        for j, plugin in enumerate(plugins):
            ip, cid = f"192.168.{10 + j}.{i % 250 + 2}", f"{tag}-{j}-{i}"
            if dual_stack:
                ip += f",fd00::{10 + j:x}:{i % 250 + 2:x}"
            for verb in VERBS:
                times[plugin][verb].append(bed.call(plugin, verb, ip, cid))
    return {p: {verb: stats(v) for verb, v in t.items()} for p, t in times.items()}


def parallel(bed, plugin, count, tag):
    """`count` ADDs at once: wall time, and CPU per call from the children's total (all of them are ours)."""
    ips = [f"192.168.100.{i + 2}" if i < 250 else f"192.168.101.{i - 248}" for i in range(count)]
    cpu, started = children_cpu_ms(), time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda k: bed.call(plugin, "ADD", ips[k], f"{tag}{k}"), range(count)))
    wall, cpu = (time.perf_counter() - started) * 1000, children_cpu_ms() - cpu
    present = bed.routes_present(ips)
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda k: bed.call(plugin, "DEL", ips[k], f"{tag}{k}"), range(count)))
    return {"wall_ms": round(wall), "cpu_per_call_ms": round(cpu / count, 2), "routes_present": present, "of": count}


def node_python():
    """The python3 a runtime's plugin finds: the first on the node's PATH."""
    found = shutil.which("python3", path=runtime.NODE_PATH)
    if found is None:
        raise SystemExit(f"no python3 on the node's PATH ({runtime.NODE_PATH})")
    return found


def one_file_build(directory):
    """dist/route as a node would run it, built from this tree for the node's python3."""
    output = os.path.join(directory, "route")
    subprocess.run([sys.executable, BUILD_DIST, "--output", output, "--python", node_python()], check=True)
    return output


def runnable(plugin, directory):
    """`plugin` as the bed can start it: a one-file build as it is, a source tree's bin/route through a
    wrapper naming this interpreter (the node's python3 lacks its packages), as the e2e tests do."""
    if libcni.is_one_file_build(Path(plugin)):
        return plugin
    wrapper = Path(directory) / "route-from-source"
    libcni.install_route(wrapper, Path(plugin))
    return str(wrapper)


def ratios(report, mine, other, routes, count):
    """route over the other plugin, per case and verb (median wall, median CPU) and per parallel run; and route's
    ADD with routes over its ADD without."""
    cases = ("routes=0", f"routes={routes}", f"ipv6_pods={routes}")
    found = {"add_with_routes_over_add": round(report[cases[1]][mine]["ADD"]["median"]
                                               / report[cases[0]][mine]["ADD"]["median"], 2)}
    if other:
        for case in cases:
            for verb in VERBS:
                for field in ("median", "cpu"):
                    found[f"{case} {verb} {field}"] = round(report[case][mine][verb][field]
                                                            / report[case][other][verb][field], 2)
        runs = zip(report[f"parallel={count}"][mine], report[f"parallel={count}"][other])
        found["parallel wall"] = [round(m["wall_ms"] / o["wall_ms"], 2) for m, o in runs]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugin", help="the route plugin to measure (default: a one-file build of this tree)")
    parser.add_argument("--vs", help="another chained route plugin to measure alongside")
    parser.add_argument("--vs-seed", action="store_true", help="build the seed's Go plugin and measure it")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--parallel-runs", type=int, default=3, help="how many times in a row (default 3)")
    parser.add_argument("--json", default="bench-results.json")
    args = parser.parse_args()
    other = args.vs
    if args.vs_seed:
        other = subprocess.run(["bash", SEED_BUILD], capture_output=True, text=True, check=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory() as work:
        given = os.path.abspath(args.plugin) if args.plugin else None
        mine = runnable(given, work) if given else one_file_build(work)
        plugins = [mine] + ([os.path.abspath(other)] if other else [])
        names = {p: "route" if p == mine else os.path.basename(p) for p in plugins}
        from_source = given is not None and not libcni.is_one_file_build(Path(given))
        python = sys.executable if from_source else node_python()  # what runs the plugin
        report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}, "
                  f"{os.cpu_count()} cores, kernel {platform.release()}", "python": python,
                  "python_version": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                                   capture_output=True, text=True).stdout.strip(),
                  "plugins": {names[p]: given or "one-file build of this tree" if p == mine else p for p in plugins},
                  "n": args.n, "load_average_before": os.getloadavg()}
        state_dir = os.path.join(work, "state")
        bed = Bed(state_dir)
        try:
            report["launch_overhead_ms"] = dict(zip(("wall", "cpu"), bed.launch_overhead(10)))
            for j, p in enumerate(plugins):
                bed.call(p, "ADD", f"192.168.9.{j + 1}", f"warm{j}")  # creates the shim; not measured
            report["routes=0"] = series(bed, plugins, args.n, "r0")
            bed.fill(args.routes)
            report[f"routes={args.routes}"] = series(bed, plugins, args.n, "rN")
            report[f"parallel={args.parallel}"] = {p: [] for p in plugins}
            for run in range(args.parallel_runs):  # each run: the plugins one after the other
                for j, p in enumerate(plugins):
                    report[f"parallel={args.parallel}"][p].append(parallel(bed, p, args.parallel, f"par{run}{j}-"))
            bed.fill(args.routes, ipv6=True)
            report[f"ipv6_pods={args.routes}"] = series(bed, plugins, args.n, "r6", dual_stack=True)
        finally:
            bed.topo.close()
    report["load_average_after"] = os.getloadavg()
    report["ratios"] = ratios(report, mine, plugins[1] if other else None, args.routes, args.parallel)
    print_report(report, plugins, names, args)
    with open(args.json, "w") as f:
        json.dump({**report, **{k: {names[p]: v for p, v in report[k].items()} for k in report
                                if k.startswith(("routes=", "ipv6_pods=", "parallel="))}}, f, indent=2)
    print(f"wrote {args.json}")


def print_report(report, plugins, names, args):
    print(f"{report['date']}  {report['machine']}  {report['python']} {report['python_version']}  n={args.n}  "
          f"load average {report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after")
    launch = report["launch_overhead_ms"]
    print(f"launch (ip netns exec + env), included below: {launch['wall']:.1f} ms wall, {launch['cpu']:.1f} ms CPU")
    print(f"{'':15} {'':10} {'ADD med':>8} {'p90':>6} {'CPU':>6}   {'CHECK med':>9} {'p90':>6} {'CPU':>6}   "
          f"{'DEL med':>8} {'p90':>6} {'CPU':>6}   (ms; CPU = user+sys median)")
    cases = ("routes=0", f"routes={args.routes}", f"ipv6_pods={args.routes}")
    for key in cases:
        for p in plugins:
            r = report[key][p]
            print(f"{key:15} {names[p]:10} " + "   ".join(
                f"{r[verb]['median']:{9 if verb == 'CHECK' else 8}.1f} {r[verb]['p90']:6.1f} {r[verb]['cpu']:6.1f}"
                for verb in VERBS))
    for p in plugins:
        runs = report[f"parallel={args.parallel}"][p]
        print(f"parallel={args.parallel:<6} {names[p]:10} " + "; ".join(
            f"wall {run['wall_ms']} ms, CPU {run['cpu_per_call_ms']:.1f}/call, {run['routes_present']}/{run['of']}"
            for run in runs))
    r = report["ratios"]
    print(f"ADD with {args.routes} routes / ADD with none (route): {r['add_with_routes_over_add']:.2f}  "
          "(target <= 1.3)")
    if len(plugins) == 2:
        print(f"route / {names[plugins[1]]}, median wall (CPU), target <= {TARGET}x, aim {AIM}x:")
        for key in cases:
            print(f"  {key:15} " + "  ".join(f"{verb} {r[f'{key} {verb} median']:.1f}x ({r[f'{key} {verb} cpu']:.1f}x)"
                                             for verb in VERBS))
        print(f"  {args.parallel} parallel ADDs' wall, each run: "
              + ", ".join(f"{ratio:.1f}x" for ratio in r["parallel wall"]) + f" (target <= {PARALLEL_TARGET}x)")


if __name__ == "__main__":
    main()
