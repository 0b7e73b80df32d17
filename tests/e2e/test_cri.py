"""Kubernetes' own path: pod sandboxes started through containerd's CRI (tests/beds/cri.py), the way the kubelet
starts them, with macvlan + host-local + route as the node's network (route put in the CNI bin dir by
`route install`). containerd runs the chain through its libcni (go-cni), with its own environment and the
K8S_POD_* arguments, and tears it down on StopPodSandbox, again on RemovePodSandbox, and after a restart.
"""
import base64
import concurrent.futures
import json
import os
import time

import pytest

from beds import libcni, runtime, watch
from beds.topology import NODE_V4, PROTO, SHIM

try:
    from beds import cri
except ImportError:  # CI installs requirements-dev.txt (tools/setup.sh), grpcio with it
    if os.environ.get("CI"):
        raise
    pytest.skip("the CRI tests need grpcio: pip install -r requirements-dev.txt", allow_module_level=True)

TIMEOUT = cri.TIMEOUT
PARALLEL = 10


@pytest.fixture
def bed(tmp_path, topo, route_plugin):
    try:
        containerd = cri.ContainerdBed(tmp_path / "containerd", topo, route_plugin)
    except runtime.SetupError as e:
        pytest.fail(str(e), pytrace=False)
    with containerd:
        yield containerd


def shim_routes(topo):
    """The node's IPv4 routes on the shim that route made (proto 201), by destination."""
    listing = topo.node_exec(["ip", "-json", "-4", "route", "show", "dev", SHIM, "proto", PROTO], timeout=TIMEOUT)
    return sorted(r["dst"] for r in json.loads(listing.stdout or "[]")) if listing.returncode == 0 else []


def ping_from_node(topo, ip):
    return topo.node_exec(["ping", "-c", "1", "-W", "2", ip], timeout=TIMEOUT).returncode == 0


def ping_from_pod(pod_netns, ip):
    return runtime.run(["nsenter", f"--net={pod_netns}", "ping", "-c", "1", "-W", "2", ip], check=False,
                       timeout=TIMEOUT).returncode == 0


def cni_args(result_file):
    """The CNI_ARGS libcni passed to the chain, from its cached result: {name: value}."""
    return dict(json.loads(result_file.read_text())["cniArgs"])


def log_blocks(bed, command):
    """route's log blocks of `command` (ADD, DEL, ...), each as its list of lines."""
    blocks = bed.route_log.read_text().split("# == route ")[1:]
    return [block.splitlines() for block in blocks if block.split(" | ")[2] == command]


def sandbox_ips(bed, sandboxes):
    return sorted(bed.client.sandbox_status(sandbox)["ip"] for sandbox in sandboxes)


@pytest.mark.parametrize("cni_version", ["1.0.0", "0.4.0"])
def test_run_pod_sandbox_routes_the_pod_and_pings_go_both_ways(bed, topo, cni_version):
    network = bed.network(cni_version)
    sandbox = bed.run_sandbox("web")
    status = bed.client.sandbox_status(sandbox)
    assert status["state"] == "SANDBOX_READY", status
    ip = status["ip"]
    assert shim_routes(topo) == [ip]
    assert ping_from_node(topo, ip)
    assert ping_from_pod(bed.pod_netns(sandbox), NODE_V4)
    assert bed.attachments(network) == [f"{sandbox}@eth0"] and bed.leases(network) == [ip]
    # the kubelet's pod, as containerd hands it to the chain; route accepts the K8S_POD_* arguments
    [result] = bed.cni_results(network)
    args = cni_args(result)
    assert (args["K8S_POD_NAME"], args["K8S_POD_NAMESPACE"], args["K8S_POD_INFRA_CONTAINER_ID"]) == \
        ("web", "rtt", sandbox), args
    assert args["IgnoreUnknown"] == "1", args
    assert json.loads(base64.b64decode(json.loads(result.read_text())["config"]))["cniVersion"] == cni_version
    [add] = log_blocks(bed, "ADD")
    assert f"# container: {sandbox}" in add and f"# netns: {bed.pod_netns(sandbox)}" in add, add
    assert f"ip route replace {ip}/32 dev {SHIM} scope link proto {PROTO}" in add, add


def test_stop_takes_route_state_and_lease_away_and_remove_deletes_again(bed, topo):
    network = bed.network()
    sandbox = bed.run_sandbox("web")
    ip = bed.client.sandbox_status(sandbox)["ip"]
    assert shim_routes(topo) == [ip]
    bed.client.stop_pod_sandbox(sandbox)
    assert bed.client.sandbox_status(sandbox)["state"] == "SANDBOX_NOTREADY"
    assert shim_routes(topo) == [] and not ping_from_node(topo, ip)
    assert bed.attachments(network) == [] and bed.leases(network) == []
    assert len(log_blocks(bed, "DEL")) == 1
    # RemovePodSandbox: a second DEL, with the netns gone (empty CNI_NETNS); containerd fails the call unless
    # the chain answers 0
    bed.client.remove_pod_sandbox(sandbox)
    bed.sandboxes.discard(sandbox)
    dels = log_blocks(bed, "DEL")
    assert len(dels) == 2 and "# netns: " in dels[1] and f"# container: {sandbox}" in dels[1], dels
    assert bed.cni_results(network) == []
    assert bed.ctr("containers", "list", "-q").stdout.strip() == ""


def test_parallel_sandboxes_each_get_their_route_and_lose_it(bed, topo):
    network = bed.network()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        sandboxes = list(pool.map(bed.run_sandbox, [f"pod-{i}" for i in range(PARALLEL)]))
    ips = sandbox_ips(bed, sandboxes)
    assert len(set(ips)) == PARALLEL
    assert shim_routes(topo) == sorted(ips) and bed.leases(network) == sorted(ips)
    assert len(bed.attachments(network)) == PARALLEL
    assert all(ping_from_node(topo, ip) for ip in ips)
    assert not watch.shape_problems(topo.node, ips)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(bed.remove_sandbox, sandboxes))
    assert shim_routes(topo) == [] and bed.attachments(network) == [] and bed.leases(network) == []
    assert bed.cni_results(network) == []


def test_sandboxes_outlive_a_containerd_restart_and_stop_after_it(bed, topo):
    """A node's containerd restarts (an upgrade, a crash) under running pods: the pods keep their routes, and
    the restarted containerd stops them from what libcni cached."""
    network = bed.network()
    sandboxes = [bed.run_sandbox(f"pod-{i}") for i in range(3)]
    ips = sandbox_ips(bed, sandboxes)
    assert bed.stop() == 0
    assert shim_routes(topo) == ips and all(ping_from_node(topo, ip) for ip in ips)
    bed.start()
    deadline = time.monotonic() + TIMEOUT
    while any(bed.client.sandbox_status(s)["state"] != "SANDBOX_READY" for s in sandboxes):
        assert time.monotonic() < deadline, "the sandboxes are not ready again after the restart"
        time.sleep(0.2)
    assert sandbox_ips(bed, sandboxes) == ips
    for sandbox in sandboxes:
        bed.remove_sandbox(sandbox)
    assert shim_routes(topo) == [] and bed.attachments(network) == [] and bed.leases(network) == []
    assert bed.cni_results(network) == []


def wait_network_ready(bed, timeout):
    deadline = time.monotonic() + timeout
    while not bed.network_ready()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    return bed.network_ready()


def test_a_conflist_route_install_writes_into_the_conf_dir_is_taken_up_without_a_restart(tmp_path, topo,
                                                                                         route_plugin):
    if not libcni.is_one_file_build(route_plugin):
        pytest.skip("route install installs only the one-file build (ROUTE_PLUGIN=dist/route)")
    with cri.ContainerdBed(tmp_path / "containerd", topo, route_plugin=None) as bed:
        assert bed.network_ready()[0] is False  # no conflist yet
        conflist = tmp_path / "route.conflist"
        conflist.write_text(json.dumps(bed.conflist()))
        runtime.run([str(route_plugin), "install", "--bin-dir", str(bed.bin_dir), "--conf-dir", str(bed.conf_dir),
                     "--conflist", str(conflist)], env=runtime.runtime_env(), timeout=TIMEOUT)
        assert wait_network_ready(bed, 10)[0], bed.network_ready()
        ip = bed.client.sandbox_status(bed.run_sandbox("web"))["ip"]
        assert shim_routes(topo) == [ip] and ping_from_node(topo, ip)


def test_containerd_1_6_misses_a_conflist_moved_in_from_another_directory(bed, tmp_path):
    """Why the docs say to write a conflist into containerd's conf dir (as route install does), not to move one
    in: Debian 12's containerd (1.6) does not take it up until it restarts."""
    conflist = tmp_path / "moved.conflist"
    conflist.write_text(json.dumps(bed.conflist()))
    conflist.rename(bed.conf_dir / cri.CONFLIST)
    assert wait_network_ready(bed, 5)[0] is False
    bed.stop()
    bed.start()
    assert wait_network_ready(bed, 10)[0], bed.network_ready()
