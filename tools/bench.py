#!/usr/bin/env python3
"""Latency and CPU of the route plugin, side by side with another chained route plugin (e.g. the seed's Go one).

The bed is the end-to-end tests' throw-away topology (tests/netns.py): a node namespace whose eno1 is one
end of a veth pair. Each plugin is invoked as a runtime invokes it (`ip netns exec NODE env -i PATH=<node's>
CNI_... PLUGIN`, config with prevResult on stdin), alternating plugins so that drift on the machine hits both
alike. What is measured by default is what a node runs: the one-file build, built here for the node's python3
(the first on the node's PATH) by tools/build_dist.py.

  tools/bench.py [--plugin FILE] [--vs PATH | --vs-seed] [--n 40] [--routes 1000] [--parallel 64]
                 [--json bench-results.json]

Reports, per verb, the median and p90 of the wall time and the median CPU time (user + system of the whole
call: launcher, interpreter and the ip processes it runs), the same with --routes other pod routes on the
shim, and --parallel concurrent ADDs: wall time, CPU per call, routes present afterwards. Needs root.
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
import netns  # noqa: E402

SEED_BUILD = os.path.join(REPO, "..", "shared", "anchors", "build.sh")
BUILD_DIST = os.path.join(REPO, "tools", "build_dist.py")
TARGET, AIM = 10, 8  # route / seed, issue 17


def conf(ip, state_dir, verb_version="1.0.0"):
    return json.dumps({
        "cniVersion": verb_version, "name": "bench", "type": "route", "master": "eno1", "bridge": "eno1.host",
        "stateDir": state_dir,
        "prevResult": {"cniVersion": verb_version,
                       "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"}],
                       "ips": [{"interface": 0, "address": ip + "/16", "gateway": "192.168.0.1"}]}})


def children_cpu_ms():
    """User + system time of every finished child (and theirs) so far, in ms."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


class Bed:
    def __init__(self, state_dir):
        self.topo = netns.Topology()
        self.state_dir = state_dir

    def call(self, plugin, verb, ip, container_id):
        """(wall ms, CPU ms) of one call. The CPU is exact only while no other call runs (see `parallel`)."""
        argv = netns.plugin_argv(self.topo.node, plugin, verb, container_id=container_id)
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
    walls, cpus = sorted(s[0] for s in samples), [s[1] for s in samples]
    return {"median": round(statistics.median(walls), 2), "p90": round(walls[int(0.9 * (len(walls) - 1))], 2),
            "cpu": round(statistics.median(cpus), 2)}


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
    found = shutil.which("python3", path=netns.NODE_PATH)
    if found is None:
        raise SystemExit(f"no python3 on the node's PATH ({netns.NODE_PATH})")
    return found


def one_file_build(directory):
    """dist/route as a node would run it, built from this tree for the node's python3."""
    output = os.path.join(directory, "route")
    subprocess.run([sys.executable, BUILD_DIST, "--output", output, "--python", node_python()], check=True)
    return output


def runnable(plugin, directory):
    """`plugin` as the bed can start it: a one-file build as it is, a source tree's bin/route through a
    wrapper naming this interpreter (the node's python3 lacks its packages), as the e2e tests do."""
    if netns.is_one_file_build(Path(plugin)):
        return plugin
    wrapper = Path(directory) / "route-from-source"
    netns.install_route(wrapper, Path(plugin))
    return str(wrapper)


def ratios(report, mine, other, routes, count):
    """route over the other plugin (and ADD with routes over ADD without): what the targets are about."""
    def add(key, field, plugin):
        return report[key][plugin]["ADD"][field]

    with_routes = f"routes={routes}"
    found = {"add_with_routes_over_add": round(add(with_routes, "median", mine) / add("routes=0", "median", mine), 2)}
    if other:
        wall = [report[f"parallel={count}"][p]["wall_ms"] for p in (mine, other)]
        compared = (("add", "routes=0", "median"), ("add_with_routes", with_routes, "median"),
                    ("add_cpu", "routes=0", "cpu"))
        found.update({f"{name}_over_other": round(add(key, field, mine) / add(key, field, other), 2)
                      for name, key, field in compared}, parallel_wall_over_other=round(wall[0] / wall[1], 2))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugin", help="the route plugin to measure (default: a one-file build of this tree)")
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
    with tempfile.TemporaryDirectory() as work:
        given = os.path.abspath(args.plugin) if args.plugin else None
        mine = runnable(given, work) if given else one_file_build(work)
        plugins = [mine] + ([os.path.abspath(other)] if other else [])
        names = {p: "route" if p == mine else os.path.basename(p) for p in plugins}
        from_source = given is not None and not netns.is_one_file_build(Path(given))
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
            report[f"parallel={args.parallel}"] = {p: parallel(bed, p, args.parallel, f"par{j}-")
                                                    for j, p in enumerate(plugins)}
        finally:
            bed.topo.close()
    report["load_average_after"] = os.getloadavg()
    report["ratios"] = ratios(report, mine, plugins[1] if other else None, args.routes, args.parallel)
    print_report(report, plugins, names, args)
    with open(args.json, "w") as f:
        json.dump({**report, **{k: {names[p]: v for p, v in report[k].items()} for k in report
                                if k.startswith(("routes=", "parallel="))}}, f, indent=2)
    print(f"wrote {args.json}")


def print_report(report, plugins, names, args):
    print(f"{report['date']}  {report['machine']}  {report['python']} {report['python_version']}  n={args.n}  "
          f"load average {report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after")
    launch = report["launch_overhead_ms"]
    print(f"launch (ip netns exec + env), included below: {launch['wall']:.1f} ms wall, {launch['cpu']:.1f} ms CPU")
    print(f"{'':14} {'':8} {'ADD med':>8} {'p90':>7} {'CPU':>6}   {'CHECK med':>9} {'CPU':>6}   "
          f"{'DEL med':>8} {'p90':>7} {'CPU':>6}   (ms; CPU = user+sys median)")
    for key in ("routes=0", f"routes={args.routes}"):
        for p in plugins:
            r = report[key][p]
            print(f"{key:14} {names[p]:8} {r['ADD']['median']:8.1f} {r['ADD']['p90']:7.1f} {r['ADD']['cpu']:6.1f}   "
                  f"{r['CHECK']['median']:9.1f} {r['CHECK']['cpu']:6.1f}   "
                  f"{r['DEL']['median']:8.1f} {r['DEL']['p90']:7.1f} {r['DEL']['cpu']:6.1f}")
    for p in plugins:
        par = report[f"parallel={args.parallel}"][p]
        print(f"parallel={args.parallel:<5} {names[p]:8} wall {par['wall_ms']} ms, CPU {par['cpu_per_call_ms']:.1f} ms "
              f"per call, routes present {par['routes_present']}/{par['of']}")
    r = report["ratios"]
    print(f"ADD with {args.routes} routes / ADD with none (route): {r['add_with_routes_over_add']:.2f}  "
          "(target <= 1.3)")
    if len(plugins) == 2:
        print(f"route / {names[plugins[1]]}: ADD median {r['add_over_other']:.1f}x, with {args.routes} routes "
              f"{r['add_with_routes_over_other']:.1f}x, {args.parallel} parallel ADDs' wall "
              f"{r['parallel_wall_over_other']:.1f}x (target <= {TARGET}x, aim {AIM}x); ADD CPU "
              f"{r['add_cpu_over_other']:.1f}x")


if __name__ == "__main__":
    main()
