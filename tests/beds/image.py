"""The DaemonSet for real (tests/e2e/test_daemonset.py): its image built from deploy/Containerfile the way a user
builds it (tools/build-image.sh), and its two containers run by podman exactly as the rendered manifest says
(manifests.py: `kubectl kustomize deploy`).

What the kubelet would make of a container of the pod spec, podman is told here (podman_argv): `command:`
replaces the image's entrypoint (and its CMD), `runAsUser`, `readOnlyRootFilesystem` (no tmpfs added, as in
Kubernetes), `capabilities` dropped and added, `allowPrivilegeEscalation: false` (no-new-privileges), each
volumeMount (read-only where it says so, with its mountPropagation) from its volume's hostPath (made if
DirectoryOrCreate), mapped to a directory of the test's node, `hostNetwork` as the node netns of the test (podman
started in it by nsenter, with --network host), and `hostPID`. Resources, probes and terminationMessagePolicy
are the kubelet's business and not translated.

No registry is reached: the base is a stand-in made by tools/debian-base.sh from Debian's mirror (cached between
runs on one machine), which also serves as the root file system of a test's node.
"""
from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
from pathlib import Path
from typing import Any

from . import REPO
from .netns import in_node
from .podman import PODMAN_NOFILE, PODMAN_NPROC, hard_limit
from .runtime import run
from .topology import Topology

BASE_IMAGE = "localhost/route-base:bookworm"
TIMEOUT = 600  # a fresh machine runs debootstrap and apt-get in the build
PROPAGATION = {"None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}  # as the kubelet asks


def base_rootfs() -> Path:
    """The stand-in base in podman's storage, and the tarball of its root file system (tools/debian-base.sh)."""
    proc = run([str(REPO / "tools" / "debian-base.sh"), BASE_IMAGE], timeout=TIMEOUT)
    return Path(proc.stdout.strip().splitlines()[-1])


def build_image(tag: str) -> None:
    """tools/build-image.sh on the stand-in base, with the build's self-check (VERSION and --version)."""
    run([str(REPO / "tools" / "build-image.sh"), "--base", BASE_IMAGE, "--tag", tag], timeout=TIMEOUT)


def remove_image(tag: str) -> None:
    run(["podman", "rmi", "--force", tag], check=False, timeout=120)


def podman_argv(container: dict[str, Any], pod: dict[str, Any], host_paths: dict[str, str], name: str,
                image: str, detach: bool = False) -> list[str]:
    """`podman run` for one container of the pod spec `pod`; `host_paths` maps each hostPath of the manifest to
    the test's directory standing for it (KeyError for a hostPath the test does not stand in for)."""
    security = container["securityContext"]
    hostpath = {volume["name"]: volume["hostPath"] for volume in pod["volumes"]}
    nofile, nproc = hard_limit(resource.RLIMIT_NOFILE, PODMAN_NOFILE), hard_limit(resource.RLIMIT_NPROC, PODMAN_NPROC)
    argv = ["podman", "run", "--name", name, "--detach" if detach else "--rm", "--log-driver", "k8s-file",
            # podman asks runc for limits above this machine's hard ones unless told (podman.py)
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}",
            "--user", str(security["runAsUser"]), "--entrypoint", json.dumps(container["command"])]
    if security.get("readOnlyRootFilesystem"):
        argv += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    argv += [f"--cap-drop={cap}" for cap in security["capabilities"].get("drop", [])]
    argv += [f"--cap-add={cap}" for cap in security["capabilities"].get("add", [])]
    for mount in container["volumeMounts"]:
        volume = hostpath[mount["name"]]
        source = host_paths[volume["path"]]
        if volume.get("type") == "DirectoryOrCreate":  # what the kubelet does for it
            os.makedirs(source, exist_ok=True)
        options = ["ro"] if mount.get("readOnly") else []
        options += [PROPAGATION[mount["mountPropagation"]]] if "mountPropagation" in mount else []
        argv += ["--volume", ":".join([source, mount["mountPath"], *([",".join(options)] if options else [])])]
    if pod.get("hostNetwork"):
        argv += ["--network", "host"]
    if pod.get("hostPID"):
        argv += ["--pid", "host"]
    return [*argv, image]


class PodmanContainers:
    """Runs containers with podman in a node netns (hostNetwork) and removes what it started."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.tag = secrets.token_hex(4)
        self.names: list[str] = []

    def name(self, container: dict[str, Any]) -> str:
        name = f"rtt-ds-{container['name']}-{os.getpid()}-{self.tag}"
        self.names.append(name)
        return name

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return run(in_node(self.topo.node, argv), check=False, timeout=timeout)

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(["podman", *args], timeout=timeout)

    def close(self) -> None:
        for name in self.names:
            self.podman("rm", "--force", "--time", "0", name)

    def __enter__(self) -> PodmanContainers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
