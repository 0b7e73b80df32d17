"""containerd 1.6 (Debian 12's, the CRI plugin built in) as a Kubernetes node runs it, in a topology.Topology's node
netns, for tests/e2e/test_cri.py and tools/cri_bench.py.

containerd is started as a node's service manager starts it: a clean environment (the node's PATH), its own
config file, and the CNI conf and bin dirs of the bed: macvlan and host-local (the reference plugins) and
`route`, put there by `route install` as a node's DaemonSet does. It keeps its root, state, socket, the pods'
netns (netns_mounts_under_state_dir) and runc's state under the bed's directory; the pods' cgroups go under a
parent of the bed's own. The pod sandbox image is made here, with no registry: a docker-archive of one layer
holding the static catatonit (`catatonit -P`, pause mode), imported into the k8s.io namespace with
`ctr images import`.

Machine-wide paths containerd uses whatever it is told (MACHINE_PATHS: the shims' sockets, libcni's cache) are
cleaned at close of what the bed made. close() stops every sandbox, stops containerd, and raises if anything of
the bed outlived them: a process, a mount, a cgroup, a CNI result.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from . import state
from .cri_client import CriClient, CriError, PodSandbox
from .libcni import REFERENCE_PLUGINS, install_route, is_one_file_build
from .machine import CNI_RESULTS, MadePaths, cgroup_pids, end_processes, is_static, mounts_under, remove_cgroups
from .netns import in_node
from .runtime import NODE_PATH, SetupError, run, runtime_env
from .topology import MASTER, SHIM, Topology

CATATONIT = Path("/usr/bin/catatonit")
PAUSE_IMAGE = "localhost/rtt-pause:1"
# containerd 1.6 puts every shim's socket in /run/containerd/s whatever its state dir; libcni caches results in
# /var/lib/cni. Children before parents.
SHIM_SOCKETS = Path("/run/containerd/s")
MACHINE_PATHS = (SHIM_SOCKETS, SHIM_SOCKETS.parent, CNI_RESULTS, CNI_RESULTS.parent)
TOOLS = {"containerd": "containerd", "ctr": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc",
         "nsenter": "util-linux"}
# The socket path must fit a sockaddr_un (108 bytes); pytest's tmp_path may not.
STATE_PREFIX = "/run/rtt-cri-"
TIMEOUT = 60
CONFLIST = "10-rtt.conflist"


def check_tools() -> None:
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool, path=NODE_PATH) is None})
    if not (CATATONIT.exists() and is_static(CATATONIT)):
        missing.append("catatonit")
    if missing:
        raise SetupError(f"the CRI tests need: apt-get install {' '.join(missing)}")


def pause_image_archive() -> bytes:
    """A docker-archive (what `ctr images import` reads) of one layer: /catatonit, run as `catatonit -P`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(CATATONIT, arcname="catatonit")
    layer_bytes = layer.getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/catatonit", "-P"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]}
                         }).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("layer.tar", layer_bytes), ("config.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ContainerdBed:
    """containerd with its CRI plugin in *topo*'s node netns, its files under *root*. Use as a context manager."""

    def __init__(self, root: Path, topo: Topology, route_plugin: Path | None,
                 netns_under_state_dir: bool = True) -> None:
        """`netns_under_state_dir` False: the pods' namespaces where containerd keeps them on a node, in the
        machine's /var/run/netns (which the DaemonSet's watcher mounts)."""
        check_tools()
        self.netns_under_state_dir = netns_under_state_dir
        self.root = Path(root)
        self.topo = topo
        self.tag = secrets.token_hex(4)
        self.cgroup_parent = f"/rtt-cri-{os.getpid()}-{self.tag}"
        self.conf_dir = self.root / "net.d"
        self.bin_dir = self.root / "cni-bin"
        self.route_state = self.root / "route-state"
        self.route_log = self.root / "route.log"
        self.ipam_dir = self.root / "ipam"
        self.state = Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
        self.socket = self.state / "containerd.sock"
        self.config = self.root / "config.toml"
        self.log = self.root / "containerd.log"
        self._made = MadePaths(MACHINE_PATHS)
        self._results_before = set(os.listdir(CNI_RESULTS)) if CNI_RESULTS.is_dir() else set()
        self.process: subprocess.Popen | None = None
        self.client: CriClient | None = None
        self.sandboxes: set[str] = set()  # not removed yet
        self._started: set[str] = set()
        try:
            self.conf_dir.mkdir(parents=True)
            self.bin_dir.mkdir()
            for name in ("loopback", "macvlan", "host-local"):  # containerd sets up every pod's lo with loopback
                (self.bin_dir / name).symlink_to(REFERENCE_PLUGINS / name)
            if route_plugin is not None and is_one_file_build(route_plugin):  # as a node gets it
                run([str(route_plugin), "install", "--bin-dir", str(self.bin_dir)], env=runtime_env(), timeout=TIMEOUT)
            elif route_plugin is not None:  # a source tree's bin/route, which install refuses
                install_route(self.bin_dir / "route", route_plugin)
            self.config.write_text(self._config_toml())
            self.start()
            archive = self.root / "pause.tar"
            archive.write_bytes(pause_image_archive())
            self.ctr("images", "import", "--snapshotter", "native", str(archive))
            deadline = time.monotonic() + TIMEOUT
            while not self.client.has_image(PAUSE_IMAGE):  # the CRI plugin learns of an import by an event
                if time.monotonic() > deadline:
                    raise SetupError(f"containerd's CRI does not see the imported {PAUSE_IMAGE}")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def _config_toml(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f'''version = 2
root = "{self.root / 'root'}"
state = "{self.state}"
# what a CRI node does not need here, and the one plugin that would write to /opt/containerd
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.state / 'ttrpc.sock'}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true  # root here lacks CAP_SYS_RESOURCE
  netns_mounts_under_state_dir = {str(self.netns_under_state_dir).lower()}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
[{cri}.cni]
  bin_dir = "{self.bin_dir}"
  conf_dir = "{self.conf_dir}"
  max_conf_num = 1
[{cri}.containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  Root = "{self.state / 'runc'}"
'''

    # -- containerd ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start containerd in the node netns (nsenter --net: `ip netns exec` would remount /sys, and runc then
        finds no cgroup mount), and wait for its CRI service."""
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.in_node(["containerd", "--config", str(self.config)]),
                                            env=runtime_env(), stdout=log, stderr=log, start_new_session=True)
        self.client = CriClient(str(self.socket))
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.client.version()
                return
            except CriError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SetupError(f"containerd did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM containerd and wait for it, as a node's service manager stops it; the shims (the pods) go on."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.process = None

    def in_node(self, argv: list[str]) -> list[str]:
        return in_node(self.topo.node, argv)

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        return run(["ctr", "--address", str(self.socket), "-n", "k8s.io", *args], timeout=TIMEOUT)

    # -- networks and sandboxes ---------------------------------------------------------------------------------
    def network(self, cni_version: str = "1.0.0", with_route: bool = True, **route_options: Any) -> str:
        """Write the conflist macvlan + host-local (+ route, with `route_options`), the one containerd uses;
        returns its name."""
        conf = self.conflist(cni_version, with_route, **route_options)
        # written in place: containerd 1.6's watcher misses a conflist moved in from another directory
        (self.conf_dir / CONFLIST).write_text(json.dumps(conf, indent=2))
        return conf["name"]

    def conflist(self, cni_version: str = "1.0.0", with_route: bool = True, **route_options: Any) -> dict:
        name = f"rtt-cri-{self.tag}"
        macvlan = {"type": "macvlan", "master": MASTER, "mode": "bridge",
                   "ipam": {"type": "host-local", "dataDir": str(self.ipam_dir), "subnet": "192.168.0.0/16",
                            "rangeStart": "192.168.1.2", "rangeEnd": "192.168.1.254", "gateway": "192.168.0.1",
                            "routes": [{"dst": "0.0.0.0/0"}]}}
        route = {"type": "route", "master": MASTER, "bridge": SHIM, "stateDir": str(self.route_state),
                 "logFile": str(self.route_log), **route_options}
        return {"cniVersion": cni_version, "name": name, "plugins": [macvlan, route] if with_route else [macvlan]}

    def network_ready(self) -> tuple[bool, str]:
        """containerd's NetworkReady condition: whether it has loaded a conflist, and why not."""
        return self.client.conditions()["NetworkReady"]

    def run_sandbox(self, name: str) -> str:
        """RunPodSandbox for a pod `name` in namespace rtt, as the kubelet asks; returns the sandbox's ID."""
        pod = PodSandbox(name, "rtt", str(uuid.uuid4()), cgroup_parent=self.cgroup_parent)
        sandbox = self.client.run_pod_sandbox(pod)
        self.sandboxes.add(sandbox)
        self._started.add(sandbox)
        return sandbox

    def shim_socket(self, sandbox: str) -> Path:
        """Where containerd 1.6 puts the socket of a sandbox's shim: named by the sha256 of
        <containerd's socket>/<namespace>/<ID>, in /run/containerd/s whatever the state dir."""
        return SHIM_SOCKETS / hashlib.sha256(f"{self.socket}/k8s.io/{sandbox}".encode()).hexdigest()

    def remove_sandbox(self, sandbox: str) -> None:
        self.client.stop_pod_sandbox(sandbox)
        self.client.remove_pod_sandbox(sandbox)
        self.sandboxes.discard(sandbox)

    def pod_netns(self, sandbox: str) -> str:
        """The sandbox's netns path, from its verbose status (the pause container's runtime spec)."""
        spec = self.client.sandbox_status(sandbox)["info"]["info"]["runtimeSpec"]
        [path] = [ns["path"] for ns in spec["linux"]["namespaces"] if ns["type"] == "network"]
        return path

    def attachments(self, network: str) -> list[str]:
        return state.attachments(self.route_state, network)

    def leases(self, network: str) -> list[str]:
        return state.leases(self.ipam_dir, network)

    def cni_results(self, network: str) -> list[Path]:
        """libcni's cached results of *network* that this bed's containerd made."""
        return sorted(p for p in CNI_RESULTS.glob(f"{network}-*") if p.name not in self._results_before)

    # -- teardown -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and remove every sandbox, stop containerd, remove all the bed made. Raises RuntimeError naming
        what outlived them (a leak), after removing that too."""
        leaks = []
        if self.client is None and self.sandboxes:  # a test stopped containerd and failed before starting it again
            try:
                self.start()
            except SetupError as e:
                leaks.append(str(e))
        if self.client is not None:
            for sandbox in sorted(self.sandboxes):
                try:
                    self.remove_sandbox(sandbox)
                except CriError as e:
                    leaks.append(f"sandbox {sandbox[:12]}: {e}")
        self.stop()
        leaks += [f"process {pid}" for pid in end_processes(self._processes, timeout=10.0)]
        for sandbox in self._started:  # a shim that was killed leaves its socket behind
            socket = self.shim_socket(sandbox)
            if socket.exists():
                leaks.append(f"shim socket {socket}")
                socket.unlink()
        for point in mounts_under(self.root) + mounts_under(self.state):
            leaks.append(f"mount {point}")
            run(["umount", "-l", point], check=False, timeout=TIMEOUT)
        leaks += [f"cgroup {path}" for path in remove_cgroups(self.cgroup_parent)]
        for conf in self.conf_dir.glob("*.conflist"):
            for result in self.cni_results(json.loads(conf.read_text())["name"]):
                leaks.append(f"CNI result {result.name}")
                result.unlink()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        self._made.remove()
        if leaks:
            raise RuntimeError("the containerd bed left behind: " + "; ".join(leaks))

    def _processes(self) -> list[int]:
        """The shims of this bed (their command line names its state dir's socket) and what is in its cgroups."""
        needle = os.fsencode(self.socket)
        pids = set()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                pass
        return sorted((pids | cgroup_pids(self.cgroup_parent)) - {os.getpid()})

    def __enter__(self) -> ContainerdBed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

