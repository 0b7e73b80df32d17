"""A podman 4.3 + buildah test bed for the `route` plugin, on a topology.Topology (tests/e2e/test_podman.py).

A real container runtime drives the chain macvlan + host-local + route (+ the leak-detecting canary) from
inside the topology's node namespace, with what Debian 12 packages: podman with its CNI backend, runc, conmon,
buildah, and catatonit for the pods' infra containers. No registry is needed: the image is imported from a
rootfs of Debian's static busybox.

Everything podman and buildah keep lives under the bed's own directory: storage (vfs), tmp dir (with file
locks, so no /dev/shm/libpod_lock), the conflists, the CNI plugin dir, host-local's and route's state. Only
the run root is a short directory of its own in /run (see RUN_ROOT_MAX), and cgroups go under a parent of
the bed's own. The few machine-wide paths these tools use whatever they are told (MACHINE_PATHS) are removed
at close when the bed made them. close() removes the containers, pods and storage, and raises if anything of
the bed outlived them: a process, a netns, a mount, a cgroup, a CNI result.

Plugins are started as on a node: podman and buildah get an environment built from scratch
(runtime.runtime_env), never this process's, and hand it on to the plugins.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import state
from .libcni import make_cni_path
from .machine import CNI_RESULTS, MadePaths, cgroup_pids, end_processes, is_static, mounts_under, remove_cgroups
from .netns import in_node
from .runtime import NODE_PATH, SetupError, run, runtime_env
from .topology import MASTER, SHIM, Topology

IMAGE = "localhost/rtt-busybox"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "ping", "ip", "touch")
# What the bed runs, and the Debian package that brings it.
TOOLS = {"podman": "podman", "buildah": "buildah", "runc": "runc", "conmon": "conmon", "nsenter": "util-linux",
         "/usr/libexec/podman/catatonit": "catatonit"}
# podman 4.3 keeps at most these limits for itself (measured: it lowers its own RLIMIT_NPROC to 32768), conmon
# and runc inherit them, and podman asks runc for exactly these unless containers.conf says otherwise: runc
# then fails ("error setting rlimit type 7") on a machine whose hard limit is lower.
PODMAN_NOFILE = 1048576
PODMAN_NPROC = 32768
# Paths podman 4.3, libcni and runc use whatever they are told: containers/image's blob cache for root,
# libcni's result cache, runc's state root. Children before parents.
MACHINE_PATHS = (
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path("/var/lib/containers/cache"),
    Path("/var/lib/containers"),
    CNI_RESULTS,
    CNI_RESULTS.parent,
    Path("/run/runc"),
)
# The podman CLI refuses a longer --runroot ("the specified runroot is longer than 50 characters"), and the
# `podman container cleanup` that conmon starts when a container exits is given the run root that way: with a
# run root under pytest's long tmp_path, containers that exit by themselves would never be cleaned up.
RUN_ROOT_MAX = 50
TIMEOUT = 60


def check_tools() -> None:
    """Raise SetupError naming the Debian packages to install."""
    missing = sorted({package for tool, package in TOOLS.items() if not _installed(tool)})
    if not (BUSYBOX.exists() and is_static(BUSYBOX)):
        missing.append("busybox-static")
    if missing:
        raise SetupError(f"the podman tests need: apt-get install {' '.join(missing)}")


def _installed(tool: str) -> bool:
    return os.path.exists(tool) if tool.startswith("/") else shutil.which(tool, path=NODE_PATH) is not None


def hard_limit(kind: int, podman_keeps: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return podman_keeps if hard == resource.RLIM_INFINITY else min(hard, podman_keeps)


def rootfs_tar() -> bytes:
    """The whole image: /bin/busybox, its applets as symlinks, and /tmp."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()


class PodmanBed:
    """podman and buildah configured under *root*, run in *topo*'s node netns. Use as a context manager."""

    def __init__(self, root: Path, topo: Topology, route_plugin: Path) -> None:
        check_tools()
        self.root = Path(root)
        self.topo = topo
        self.tag = secrets.token_hex(4)
        self.cgroup_parent = f"rtt-podman-{os.getpid()}-{self.tag}"
        self.conf_dir = self.root / "net.d"
        self.route_state = self.root / "route-state"
        self.route_log = self.root / "route.log"
        self._made = MadePaths(MACHINE_PATHS)
        self._sandboxes: set[str] = set()
        containers_conf = self.root / "containers.conf"
        storage_conf = self.root / "storage.conf"
        self.env = runtime_env(CONTAINERS_CONF=str(containers_conf), CONTAINERS_STORAGE_CONF=str(storage_conf))
        self.run_root = Path(tempfile.mkdtemp(prefix="rtt-podman-", dir="/run"))
        # buildah's runc keeps its state here, not in /run/runc: what a killed `buildah run` leaves is the bed's
        self.runc_root = self.run_root / "runc"
        try:
            if len(str(self.run_root)) > RUN_ROOT_MAX:
                raise SetupError(f"podman's run root {self.run_root} is longer than {RUN_ROOT_MAX} characters")
            self.conf_dir.mkdir(parents=True)
            self.cni_path = make_cni_path(self.root / "cni-bin", route_plugin)
            containers_conf.write_text(self._containers_conf())
            storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root / "storage"}"\n'
                                    f'runroot = "{self.run_root}"\n')
            image = self.root / "rootfs.tar"
            image.write_bytes(rootfs_tar())
            self.podman("import", "--change", "CMD=/bin/sh", str(image), IMAGE)
        except BaseException:
            self.close()
            raise

    def _containers_conf(self) -> str:
        tmp = self.root / "tmp"
        nofile = hard_limit(resource.RLIMIT_NOFILE, PODMAN_NOFILE)
        nproc = hard_limit(resource.RLIMIT_NPROC, PODMAN_NPROC)
        # runc with cgroupfs: crun fails on this machine's hybrid cgroup layout.
        return (f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
                f'log_driver = "k8s-file"\n'
                f'[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nlock_type = "file"\n'
                f'tmp_dir = "{tmp}"\nimage_copy_tmp_dir = "{tmp}"\n'
                f'events_logger = "file"\nevents_logfile_path = "{tmp}/events.log"\n'
                f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{self.conf_dir}"\n'
                f'cni_plugin_dirs = ["{self.cni_path}"]\n')

    # -- commands -------------------------------------------------------------
    def in_node(self, argv: Sequence[str]) -> list[str]:
        return in_node(self.topo.node, argv)

    def podman(self, *args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return run(self.in_node(["podman", *args]), check=check, env=self.env, timeout=timeout)

    def buildah(self, *args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return run(self.in_node(["buildah", *args]), check=check, env=self.env, timeout=timeout)

    @contextlib.contextmanager
    def buildah_run(self, network: str, container: str, *command: str) -> Iterator[subprocess.Popen]:
        """`buildah run --network` with pipes on stdin and stdout. On leaving, stdin is closed and buildah is
        waited for, so that it tears the network down even when the test failed; killed after TIMEOUT."""
        argv = self.in_node(["buildah", "run", "--network", network, "--cni-config-dir", str(self.conf_dir),
                             "--cni-plugin-path", self.cni_path, "--runtime-flag", f"root={self.runc_root}",
                             container, "--", *command])
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        try:
            yield proc
        finally:
            if proc.poll() is None:
                try:
                    proc.communicate(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            watchdog.cancel()

    # -- networks, containers, pods -------------------------------------------
    def network(self, kind: str, **route_keys: Any) -> str:
        """Write the conflist macvlan + host-local, route (with route_keys), canary; returns its name."""
        name = f"rtt-{kind}-{self.tag}"
        # host-local's `ranges` form: podman learns the subnet from it, and `podman network reload` asks for
        # each container's address again, which podman refuses on a network whose subnet it does not know.
        macvlan = {"type": "macvlan", "master": MASTER, "mode": "bridge",
                   "ipam": {"type": "host-local", "dataDir": str(self.root / "ipam"), "routes": [{"dst": "0.0.0.0/0"}],
                            "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": "192.168.1.2",
                                         "rangeEnd": "192.168.1.254", "gateway": "192.168.0.1"}]]}}
        route = {"type": "route", "master": MASTER, "bridge": SHIM, "stateDir": str(self.route_state),
                 "logFile": str(self.route_log), **route_keys}
        canary = {"type": "canary", "venv": sys.prefix}
        conf = {"cniVersion": "1.0.0", "name": name, "plugins": [macvlan, route, canary]}
        (self.conf_dir / f"{name}.conflist").write_text(json.dumps(conf, indent=2))
        return name

    def run(self, name: str, network: str | None = None, pod: str | None = None,
            command: Sequence[str] = ("sleep", "600")) -> str:
        """`podman run -d` on *network*, or in *pod*; returns the container's ID. Containers and pods are made
        here and in create_pod(), which put their cgroups under the bed's parent."""
        where = ["--pod", pod] if pod else ["--network", network, "--cgroup-parent", self.cgroup_parent]
        cid = self.podman("run", "-d", "--name", name, *where, IMAGE, *command).stdout.strip()
        self._sandboxes.add(self.sandbox(cid))
        return cid

    def create_pod(self, name: str, network: str) -> str:
        """`podman pod create` on *network*; returns its infra container's ID, which owns the attachment."""
        self.podman("pod", "create", "--name", name, "--network", network, "--cgroup-parent", self.cgroup_parent)
        return self.inspect(name, "pod")["InfraContainerID"]

    def inspect(self, name: str, kind: str = "container") -> dict[str, Any]:
        found = json.loads(self.podman(kind, "inspect", name).stdout)
        return found if kind == "pod" else found[0]  # podman 4.3 inspects one pod as an object, not a list

    def sandbox(self, container: str) -> str:
        """The container's netns (/run/netns/netns-<uuid>); "" while it has none."""
        return self.inspect(container)["NetworkSettings"]["SandboxKey"]

    def address(self, container: str, network: str) -> str:
        return self.inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def attachments(self, network: str) -> list[str]:
        return state.attachments(self.route_state, network)

    def leases(self, network: str) -> list[str]:
        return state.leases(self.root / "ipam", network)

    def cni_results(self, network: str) -> list[str]:
        """libcni's cached results of *network* (podman 4.3 keeps them in /var/lib/cni/results)."""
        return sorted(p.name for p in CNI_RESULTS.glob(f"{network}-*"))

    # -- teardown -------------------------------------------------------------
    def close(self) -> None:
        """Remove every container, pod and buildah container, then all the bed made. Raises RuntimeError
        naming what outlived them (a leak), after removing that too."""
        leaks = self._remove_containers()
        leaks += [f"runc container {cid}" for cid in self._remove_runc_leftovers()]
        leaks += [f"process {pid}" for pid in self._end_processes()]
        sandboxes = sorted(path for path in self._sandboxes if os.path.lexists(path))
        mounts = mounts_under(self.root) + mounts_under(self.run_root)
        leaks += [f"netns {path}" for path in sandboxes] + [f"mount {point}" for point in mounts]
        for point in mounts + sandboxes:
            run(["umount", "-l", point], check=False, timeout=TIMEOUT)
        for path in sandboxes:
            os.unlink(path)
        leaks += [f"cgroup {path}" for path in self._remove_cgroups()]
        for conf in self.conf_dir.glob("*.conflist"):
            for name in self.cni_results(conf.stem):
                leaks.append(f"CNI result {name}")
                (CNI_RESULTS / name).unlink()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run_root, ignore_errors=True)
        self._made.remove()
        if leaks:
            raise RuntimeError("the podman bed left behind: " + "; ".join(leaks))

    def _remove_containers(self) -> list[str]:
        """podman pod rm -af, podman rm -af, buildah rm --all; returns the errors."""
        if not (self.root / "storage").exists():
            return []
        ids = self.podman("ps", "-aq", check=False).stdout.split()
        if ids:
            keys = self.podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", *ids, check=False)
            self._sandboxes |= set(keys.stdout.split())
        errors = []
        for proc in (self.podman("pod", "rm", "-af", "-t", "0", check=False),
                     self.podman("rm", "-af", "-t", "0", check=False),
                     self.buildah("rm", "--all", check=False)):
            if proc.returncode != 0:
                errors.append(f"{' '.join(proc.args[2:])}: {proc.stderr.strip()}")
        return errors

    def _remove_runc_leftovers(self) -> list[str]:
        """Delete what a `buildah run` killed before its teardown left in the bed's runc root (its process,
        cgroups and state) and the bundle buildah made for it in /var/tmp; returns the container IDs."""
        ids = sorted(path.parent.name for path in self.runc_root.glob("*/state.json"))
        for cid in ids:
            labels = json.loads((self.runc_root / cid / "state.json").read_text())["config"].get("labels", [])
            run(["runc", "--root", str(self.runc_root), "delete", "--force", cid], check=False, timeout=TIMEOUT)
            for label in labels:
                if label.startswith("bundle="):
                    shutil.rmtree(label.removeprefix("bundle="), ignore_errors=True)
        return ids

    def _end_processes(self) -> list[int]:
        """Wait for conmon and `podman container cleanup` to end; kill and return what is still running then."""
        return end_processes(self._processes)

    def _processes(self) -> list[int]:
        """The bed's processes: conmon and podman naming its directory, and whatever is in its cgroups."""
        needle = os.fsencode(self.root)
        pids = set()
        for entry in Path("/proc").iterdir():
            try:
                if (entry.name.isdigit() and os.path.basename(os.readlink(entry / "exe")) in ("conmon", "podman")
                        and needle in (entry / "cmdline").read_bytes()):
                    pids.add(int(entry.name))
            except OSError:  # it ended meanwhile, or is a kernel thread
                pass
        return sorted((pids | cgroup_pids(self.cgroup_parent)) - {os.getpid()})

    def _remove_cgroups(self) -> list[str]:
        """Remove the bed's cgroup parent in every hierarchy: podman leaves conmon's cgroup and, in the named
        systemd and the unified hierarchies, the pods' behind. Returns what could not be removed."""
        return remove_cgroups(self.cgroup_parent)

    def __enter__(self) -> PodmanBed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
