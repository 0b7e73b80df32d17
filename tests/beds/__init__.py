"""The test beds: what the e2e tests, tools/demo.py and the benchmarks build a node from, one file per concern.

  runtime.py     running a command with the environment a container runtime gives a plugin (the node's PATH)
  netns.py       the throw-away rtt-* network namespaces, and running a command in one
  topology.py    node + lan (+ pods, a second NIC) joined by veth pairs; the names the plugin is given there
  libcni.py      CNI plugins as a runtime runs them: the libcni driver, a CNI_PATH, the Cni object, result checks
  services.py    an echo server and client, kube-proxy's translation
  watch.py       `route reconcile --watch` as a node runs it, and whether the node is in shape
  state.py       what route and host-local keep on disk, read through the plugin's own package
  machine.py     what a container runtime leaves on the machine (processes, cgroups, mounts), and its removal
  podman.py      podman 4.3 + buildah with their CNI backend
  cri.py         containerd's CRI as a kubelet drives it (cri_client.py: the CRI's gRPC calls)
  image.py       the DaemonSet's image and its containers run as the manifest says
  manifests.py   deploy/ rendered by kustomize
  memcg.py       a memory cgroup with the DaemonSet's limit, for one command at a time

Nothing here touches the machine's own interfaces, routes or sysctls. Fixtures live in the conftest.py files.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# state.py reads route's records through lib/cniroute; tools/ put only tests/ on sys.path
if str(REPO / "lib") not in sys.path:
    sys.path.append(str(REPO / "lib"))
