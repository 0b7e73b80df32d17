"""The DaemonSet for real: the image built from deploy/Containerfile by tools/build-image.sh (on the stand-in base
of tools/debian-base.sh), its self-check run by the build, and both containers of the rendered manifest run by
podman as the manifest says (tests/image_bed.py), on a node whose / is a Debian 12 root file system and whose
network is the test's node netns: the init container installs route, or refuses in one line on a node that
cannot run it; the watcher repairs the pods' network of a containerd node and stops on SIGTERM.
"""
import os
import time

import pytest
from e2e_support import SHIM

import image_bed
import manifests
import netns
from cniroute.doctor.prerequisites import PYTHON_PROBE

try:
    import cri_bed
except ImportError:  # CI installs requirements-dev.txt (tools/setup.sh), grpcio with it
    if os.environ.get("CI"):
        raise
    cri_bed = None

NODE_LACKS = {"python3": ("usr/bin/python3", "usr/bin/python3.11"), "ip": ("usr/bin/ip", "usr/sbin/ip")}


@pytest.fixture(scope="module")
def pod():
    return manifests.daemonset()["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def rootfs():
    try:
        return image_bed.base_rootfs()
    except netns.CommandError as e:
        pytest.fail(f"tools/debian-base.sh failed: {e}", pytrace=False)


@pytest.fixture(scope="module")
def image(rootfs):
    tag = f"localhost/rtt-route:{os.getpid()}"
    try:
        image_bed.build_image(tag)
    except netns.CommandError as e:
        pytest.fail(f"tools/build-image.sh failed: {e}", pytrace=False)
    yield tag
    image_bed.remove_image(tag)


@pytest.fixture
def podman(topo):
    with image_bed.PodmanContainers(topo) as containers:
        yield containers


def node_root(rootfs, directory, lacks=()):
    """A node's / from the stand-in's root file system, without the files of `lacks` (NODE_LACKS keys)."""
    # GNU tar, which made the tarball (tools/debian-base.sh): it keeps owners, modes, devices and absolute
    # symlinks as a root file system needs, and refuses members that would land outside `directory`
    left_out = [f"--exclude=./{path}" for program in lacks for path in NODE_LACKS[program]]
    directory.mkdir()
    netns.run(["tar", "-C", str(directory), "-xf", str(rootfs), "--anchored", *left_out], timeout=300)
    return directory


def host_paths(node, **others):
    """The manifest's hostPaths as this test's node has them."""
    return {"/": str(node), "/opt/cni/bin": str(node / "opt" / "cni" / "bin"), **others}


def run_install(podman, pod, image, paths):
    [init] = pod["initContainers"]
    return podman.run(image_bed.podman_argv(init, pod, paths, podman.name(init), image))


def test_the_init_container_installs_route_on_a_node_that_can_run_it(image, rootfs, pod, podman, tmp_path):
    node = node_root(rootfs, tmp_path / "node")
    proc = run_install(podman, pod, image, host_paths(node))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "route install: the node (/node) can run it: python3: /usr/bin/python3 is Python 3." in proc.stdout, \
        proc.stdout
    installed = node / "opt" / "cni" / "bin" / "route"
    answer = netns.run(["chroot", str(node), "/opt/cni/bin/route", "--version"], env=netns.runtime_env(),
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
    if cri_bed is None:
        pytest.skip("the containerd node needs grpcio: pip install -r requirements-dev.txt")
    with cri_bed.ContainerdBed(tmp_path / "containerd", topo, route_plugin=None) as node:
        # the init container puts route into the bin dir containerd's CNI uses
        root = node_root(rootfs, tmp_path / "node")
        proc = run_install(podman, pod, image, host_paths(root, **{"/opt/cni/bin": str(node.bin_dir)}))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        node.network()
        sandboxes = [node.run_sandbox(f"pod-{i}") for i in range(2)]
        ips = sorted(node.client.sandbox_status(sandbox)["ip"] for sandbox in sandboxes)
        assert not netns.shape_problems(topo.node, ips)
        [watcher] = pod["containers"]
        name = podman.name(watcher)
        paths = host_paths(root, **{"/run/cni-route": str(node.route_state), "/proc/sys/net": "/proc/sys/net"})
        started = podman.run(image_bed.podman_argv(watcher, pod, paths, name, image, detach=True))
        assert started.returncode == 0, started
        assert wait_for_log(podman, name, "watching"), podman.podman("logs", name)
        topo.node_exec(["ip", "link", "del", SHIM], check=True)
        assert netns.wait_in_shape(topo.node, ips, timeout=20) is not None, netns.shape_problems(topo.node, ips)
        assert wait_for_log(podman, name, f"{SHIM}: repaired"), podman.podman("logs", name)
        grace = pod["terminationGracePeriodSeconds"]
        began = time.monotonic()
        stopped = podman.podman("stop", "--time", str(grace), name)  # SIGTERM, then SIGKILL after the grace
        assert stopped.returncode == 0 and time.monotonic() - began < grace, stopped
        state = podman.podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert state.stdout.strip() == "0", (state, podman.podman("logs", name))


def wait_for_log(podman, name, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = podman.podman("logs", name)
        if text in logs.stdout + logs.stderr:
            return True
        time.sleep(0.2)
    return False

