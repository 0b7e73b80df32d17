"""The DaemonSet for real: the image built from deploy/Containerfile by tools/build-image.sh (on the stand-in base
of tools/debian-base.sh), its self-check run by the build, and both containers of the rendered manifest run by
podman as the manifest says (tests/beds/image.py), on a node whose / is a Debian 12 root file system and whose
network is the test's node netns: the init container installs route, or refuses in one line on a node that
cannot run it; the watcher repairs the pods' network of a containerd node, node side and inside the pods, and
stops on SIGTERM.
"""
import json
import os
import time

import pytest

from beds import manifests, runtime, watch
from beds.image import PodmanContainers, base_rootfs, build_image, podman_argv, remove_image
from beds.topology import ELSEWHERE_V4, PROTO, SECOND_NIC, SHIM, move_node_address, node_sysctl
from cniroute.doctor.prerequisites import PYTHON_PROBE

try:
    from beds import cri
except ImportError:  # CI installs requirements-dev.txt (tools/setup.sh), grpcio with it
    if os.environ.get("CI"):
        raise
    cri = None

NODE_LACKS = {"python3": ("usr/bin/python3", "usr/bin/python3.11"), "ip": ("usr/bin/ip", "usr/sbin/ip")}


@pytest.fixture(scope="module")
def pod():
    return manifests.daemonset()["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def rootfs():
    try:
        return base_rootfs()
    except runtime.CommandError as e:
        pytest.fail(f"tools/debian-base.sh failed: {e}", pytrace=False)


@pytest.fixture(scope="module")
def image(rootfs):
    tag = f"localhost/rtt-route:{os.getpid()}"
    try:
        build_image(tag)
    except runtime.CommandError as e:
        pytest.fail(f"tools/build-image.sh failed: {e}", pytrace=False)
    yield tag
    remove_image(tag)


@pytest.fixture
def podman(topo):
    with PodmanContainers(topo) as containers:
        yield containers


def node_root(rootfs, directory, lacks=()):
    """A node's / from the stand-in's root file system, without the files of `lacks` (NODE_LACKS keys)."""
    # GNU tar, which made the tarball (tools/debian-base.sh): it keeps owners, modes, devices and absolute
    # symlinks as a root file system needs, and refuses members that would land outside `directory`
    left_out = [f"--exclude=./{path}" for program in lacks for path in NODE_LACKS[program]]
    directory.mkdir()
    runtime.run(["tar", "-C", str(directory), "-xf", str(rootfs), "--anchored", *left_out], timeout=300)
    return directory


def host_paths(node, **others):
    """The manifest's hostPaths as this test's node has them."""
    return {"/": str(node), "/opt/cni/bin": str(node / "opt" / "cni" / "bin"),
            "/var/run/netns": "/var/run/netns", **others}  # the machine's, where the containerd node puts them


def run_install(podman, pod, image, paths):
    [init] = pod["initContainers"]
    return podman.run(podman_argv(init, pod, paths, podman.name(init), image))


def test_the_init_container_installs_route_on_a_node_that_can_run_it(image, rootfs, pod, podman, tmp_path):
    node = node_root(rootfs, tmp_path / "node")
    proc = run_install(podman, pod, image, host_paths(node))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "route install: the node (/node) can run it: python3: /usr/bin/python3 is Python 3." in proc.stdout, \
        proc.stdout
    installed = node / "opt" / "cni" / "bin" / "route"
    answer = runtime.run(["chroot", str(node), "/opt/cni/bin/route", "--version"], env=runtime.runtime_env(),
                         timeout=60)
    assert answer.stdout.startswith("route "), answer
    assert os.stat(installed).st_mode & 0o777 == 0o755
    again = run_install(podman, pod, image, host_paths(node))  # a restarted pod finds it there
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("lacks", sorted(NODE_LACKS))
def test_the_init_container_refuses_a_node_without_python3_or_ip_in_one_clean_line(image, rootfs, pod, podman,
                                                                                     tmp_path, lacks):
    node = node_root(rootfs, tmp_path / "node", lacks=[lacks])
    proc = run_install(podman, pod, image, host_paths(node))
    assert proc.returncode == 1, proc
    [line] = (proc.stdout + proc.stderr).splitlines()
    assert line.startswith("route install: refused, nothing changed: the node (/node) cannot run route: "), line
    clauses = line.split("cannot run route: ", 1)[1].split("; ")
    assert [clause.split(":")[0] for clause in clauses] == ["python3" if lacks == "python3" else "ip -json"], line
    assert PYTHON_PROBE not in line, line  # the probe's source is no reason
    assert list((node / "opt" / "cni" / "bin").iterdir()) == []


def test_the_watcher_repairs_a_containerd_nodes_pods_and_stops_on_sigterm(image, rootfs, pod, podman, topo,
                                                                        tmp_path):
    if cri is None:
        pytest.skip("the containerd node needs grpcio: pip install -r requirements-dev.txt")
    with cri.ContainerdBed(tmp_path / "containerd", topo, route_plugin=None, netns_under_state_dir=False) as node:
        # the init container puts route into the bin dir containerd's CNI uses
        root = node_root(rootfs, tmp_path / "node")
        proc = run_install(podman, pod, image, host_paths(root, **{"/opt/cni/bin": str(node.bin_dir)}))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        node.network()
        sandboxes = [node.run_sandbox(f"pod-{i}") for i in range(2)]
        ips = sorted(node.client.sandbox_status(sandbox)["ip"] for sandbox in sandboxes)
        assert not watch.shape_problems(topo.node, ips)
        [watcher] = pod["containers"]
        name = podman.name(watcher)
        paths = host_paths(root, **{"/run/cni-route": str(node.route_state), "/proc/sys/net": "/proc/sys/net"})
        started = podman.run(podman_argv(watcher, pod, paths, name, image, detach=True))
        assert started.returncode == 0, started
        assert wait_for_log(podman, name, "watching"), podman.podman("logs", name)
        topo.node_exec(["ip", "link", "del", SHIM], check=True)
        assert watch.wait_in_shape(topo.node, ips, timeout=20) is not None, watch.shape_problems(topo.node, ips)
        assert wait_for_log(podman, name, f"{SHIM}: repaired"), podman.podman("logs", name)
        grace = pod["terminationGracePeriodSeconds"]
        began = time.monotonic()
        stopped = podman.podman("stop", "--time", str(grace), name)  # SIGTERM, then SIGKILL after the grace
        assert stopped.returncode == 0 and time.monotonic() - began < grace, stopped
        state = podman.podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert state.stdout.strip() == "0", (state, podman.podman("logs", name))


VIA = "10.96.0.0/12"
NEW_ADDRESS = "10.20.0.7"


def test_the_watcher_heals_inside_the_running_pods_after_the_nodes_address_changes(image, rootfs, pod, podman,
                                                                                   topo, tmp_path):
    """The watcher as the manifest runs it (its capabilities, the pods' namespaces mounted as it says) enters
    the pods of a containerd node that keeps them where nodes do (/var/run/netns): a node whose master has no
    address, pods with routeViaHost; after a DHCP renewal gave the node another address, the on-link route and
    routeViaHost's route in both pods move to it."""
    if cri is None:
        pytest.skip("the containerd node needs grpcio: pip install -r requirements-dev.txt")
    node_sysctl(topo, "net.ipv4.ip_forward", 1)  # routeViaHost needs it
    move_node_address(topo, families=(4,))
    with cri.ContainerdBed(tmp_path / "containerd", topo, route_plugin=None, netns_under_state_dir=False) as node:
        root = node_root(rootfs, tmp_path / "node")
        proc = run_install(podman, pod, image, host_paths(root, **{"/opt/cni/bin": str(node.bin_dir)}))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        node.network(routeViaHost=[VIA])
        [watcher] = pod["containers"]
        name = podman.name(watcher)
        paths = host_paths(root, **{"/run/cni-route": str(node.route_state), "/proc/sys/net": "/proc/sys/net"})
        first = node.pod_netns(node.run_sandbox("pod-0"))
        started = podman.run(podman_argv(watcher, pod, paths, name, image, detach=True))
        assert started.returncode == 0, started
        assert wait_for_log(podman, name, "watching"), podman.podman("logs", name)
        later = node.pod_netns(node.run_sandbox("pod-1"))  # its namespace mounted after the watcher started
        pods = [first, later]
        assert all(path.startswith("/var/run/netns/") for path in pods), pods
        assert [routes_in(path) for path in pods] == [{(ELSEWHERE_V4, None), (VIA, ELSEWHERE_V4)}] * 2
        renew(topo)
        wanted = {(NEW_ADDRESS, None), (VIA, NEW_ADDRESS)}
        deadline = time.monotonic() + 20
        while any(routes_in(path) != wanted for path in pods) and time.monotonic() < deadline:
            time.sleep(0.1)
        logs = podman.podman("logs", name)
        assert [routes_in(path) for path in pods] == [wanted] * 2, logs.stdout + logs.stderr
        assert "cannot enter" not in logs.stdout + logs.stderr, logs.stdout + logs.stderr  # not even for a while
        assert podman.podman("stop", "--time", str(pod["terminationGracePeriodSeconds"]), name).returncode == 0


def routes_in(path):
    """route's routes in the namespace at `path`: {(dst, gateway)}."""
    found = json.loads(runtime.run(["nsenter", f"--net={path}", "ip", "-json", "route"], timeout=30).stdout)
    return {(r["dst"], r.get("gateway")) for r in found if r.get("protocol") == PROTO}


def renew(topo):
    """A DHCP renewal that gives the node another address on its NIC (as tests/e2e/test_pod_side_heals.py)."""
    for argv in (["sysctl", "-qw", f"net.ipv4.conf.{SECOND_NIC}.promote_secondaries=1"],
                 ["ip", "addr", "add", f"{NEW_ADDRESS}/24", "dev", SECOND_NIC],
                 ["ip", "addr", "del", f"{ELSEWHERE_V4}/24", "dev", SECOND_NIC]):
        topo.node_exec(argv, check=True)


def wait_for_log(podman, name, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = podman.podman("logs", name)
        if text in logs.stdout + logs.stderr:
            return True
        time.sleep(0.2)
    return False


def test_the_watchers_probes_pass_in_the_image_and_its_declared_port_serves_the_metrics(image, pod, podman, topo,
                                                                                       tmp_path):
    """The manifest's probe commands exist in the image and pass against the watcher container run as the manifest
    says, and the container port it names `metrics` serves Prometheus' text format on the node."""
    [watcher] = pod["containers"]
    name = podman.name(watcher)
    paths = {"/run/cni-route": str(tmp_path / "state"), "/proc/sys/net": "/proc/sys/net",
             "/var/run/netns": "/var/run/netns"}
    started = podman.run(podman_argv(watcher, pod, paths, name, image, detach=True))
    assert started.returncode == 0, started
    assert wait_for_log(podman, name, "watching"), podman.podman("logs", name)
    for kind in ("livenessProbe", "readinessProbe"):
        probe = podman.podman("exec", name, *watcher[kind]["exec"]["command"])
        assert probe.returncode == 0, (kind, probe.stdout, probe.stderr, podman.podman("logs", name).stderr)
    [port] = [p["containerPort"] for p in watcher["ports"] if p["name"] == "metrics"]
    scrape = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    text = topo.node_exec(["python3", "-c", scrape], check=True).stdout
    in_shape = 'route_cni_reconcile_passes_total{result="in_shape"} '
    [passes] = [line for line in text.splitlines() if line.startswith(in_shape)]
    assert float(passes[len(in_shape):]) >= 1, text
    assert podman.podman("stop", "--time", str(pod["terminationGracePeriodSeconds"]), name).returncode == 0
