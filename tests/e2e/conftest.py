"""pytest fixtures for the `route` CNI plugin end-to-end tests.

Fixture API (all need root; everything runs in throw-away ``rtt-*`` netns):

  cnidriver                      (session) path of the built tests/cnidriver binary
  route_plugin                   (session) path of the plugin under test
                                 ($ROUTE_PLUGIN, else <repo>/bin/route; in CI the one-file build)
  _sweep_rtt_netns               (session, autouse) deletes leftover rtt-* netns at start/end
                                 (not those of another live session: see beds.netns.sweep_leftovers)
  topo                           (function) a beds.topology.Topology (node/lan/pods)
  cni_path                       (function) tmp dir with macvlan, host-local, canary, route
  chain                          (function) chain(cni_version="1.0.0", name="rtt-route",
                                              plugins=None, **route_keys) -> Path of conflist
                                 (every chain ends with tests/cni-canary, which fails the call
                                 if the test's environment leaked into the plugins)
  cni                            (function) beds.libcni.Cni object bound to topo/cnidriver/cni_path:
      cni.add(conflist, pod, container_id=None, ifname="eth0") -> (rc, json|None, stderr)
      cni.check(...), cni.delete(...)                          -> same triple
      cni.run(cmd, conflist, pod, container_id=None, ifname="eth0")
      cni.shim_link(dev="eno1.host")     -> dict from `ip -json -d link show DEV` or None
      cni.shim_routes(dev="eno1.host")   -> list of route dicts (v4+v6, main table) via DEV
      cni.node_links()                   -> list of `ip -json -d link show` dicts in node
      cni.node_routes()                  -> list of all v4+v6 main-table routes in node
      cni.ping_from_node(ip) / cni.ping_from_pod(pod, ip) -> bool
  dual_chain                     (function) dual_chain(version="1.0.0", **route_keys): the seed's chain with
                                 a v4 and a v6 range (fd00::100-1ff) in host-local
  servers                        (function) serve(ns, address, port): an echo server (beds.services.SERVER)
  container_id                   (function) a fresh, libcni-valid container ID

The plain helpers the tests use are in tests/beds/ (see its __init__.py): the topology's names and
move_node_address (beds.topology), ok/failed/add_pod/pod_ips (beds.libcni), request/kube_proxy (beds.services).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from beds import REPO, libcni, netns
from beds.libcni import Cni
from beds.runtime import SetupError
from beds.services import SERVER
from beds.topology import MASTER, SHIM, Topology


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root (network namespaces)", pytrace=False)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _sweep_rtt_netns():
    _require_root()
    netns.sweep_leftovers()
    yield
    netns.sweep_leftovers()


@pytest.fixture(scope="session")
def cnidriver(tmp_path_factory) -> str:
    """Build tests/cnidriver once against Debian's libcni; fail loudly if not."""
    try:
        return libcni.build_cnidriver(tmp_path_factory.mktemp("cnidriver"))
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def route_plugin() -> Path:
    """$ROUTE_PLUGIN (tools/test.sh and CI: the one-file build dist/route, run by the node's python3 as a
    runtime runs it), else the source tree's bin/route with this interpreter (the fast inner loop)."""
    p = Path(os.environ.get("ROUTE_PLUGIN") or (REPO / "bin" / "route")).resolve()
    if os.environ.get("CI") and not libcni.is_one_file_build(p):
        pytest.fail(f"CI tests what nodes run: ROUTE_PLUGIN must be the one-file build, not {p}", pytrace=False)
    return p


@pytest.fixture
def topo():
    _require_root()
    with Topology() as t:
        yield t


@pytest.fixture
def cni_path(tmp_path, route_plugin) -> str:
    try:
        return libcni.make_cni_path(tmp_path / "cni-bin", route_plugin)
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def chain(tmp_path):
    """Factory writing a macvlan(+host-local) -> route conflist into tmp_path.

    chain(cni_version="1.0.0", name="rtt-route", plugins=None, **route_keys)
    `route_keys` are merged into (and may override / delete with None) the
    route plugin's config.  `plugins` lets a test supply the full plugin list
    instead (e.g. a route-only list).  Returns the Path of the conflist."""
    counter = [0]

    def make(cni_version: str = "1.0.0", name: str = "rtt-route",
             plugins: list[dict[str, Any]] | None = None, **route_keys) -> Path:
        counter[0] += 1
        if plugins is None:
            route = {"type": "route", "master": MASTER, "bridge": SHIM,
                     "stateDir": str(tmp_path / "route-state")}
            for k, v in route_keys.items():
                if v is None:
                    route.pop(k, None)
                else:
                    route[k] = v
            plugins = [
                {
                    "type": "macvlan",
                    "master": MASTER,
                    "mode": "bridge",
                    "ipam": {
                        "type": "host-local",
                        "subnet": "192.168.0.0/16",
                        "rangeStart": "192.168.1.2",
                        "rangeEnd": "192.168.1.254",
                        "gateway": "192.168.0.1",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(tmp_path / "ipam"),
                    },
                },
                route,
            ]
        # Last in every chain: fails the call if the test's environment leaked into the plugins.
        plugins = [*plugins, {"type": "canary", "venv": sys.prefix}]
        conf = {"cniVersion": cni_version, "name": name, "plugins": plugins}
        path = tmp_path / f"conflist-{counter[0]}-{cni_version}.json"
        path.write_text(json.dumps(conf, indent=2))
        return path

    return make


@pytest.fixture
def dual_chain(chain, tmp_path):
    """The seed's chain with a v4 and a v6 range in host-local."""
    def make(version="1.0.0", **route_keys):
        route = {"type": "route", "master": MASTER, "bridge": SHIM, "stateDir": str(tmp_path / "state"),
                 **route_keys}
        ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                "ranges": [[{"subnet": "192.168.0.0/16", "rangeStart": "192.168.1.2", "rangeEnd": "192.168.1.254",
                             "gateway": "192.168.0.1"}],
                           [{"subnet": "fd00::/64", "rangeStart": "fd00::100", "rangeEnd": "fd00::1ff"}]],
                "routes": [{"dst": "0.0.0.0/0"}]}
        return chain(version, plugins=[{"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": ipam},
                                       route])
    return make


@pytest.fixture
def cni(topo, cnidriver, cni_path, tmp_path) -> Cni:
    cache = tmp_path / "cni-cache"
    cache.mkdir(exist_ok=True)
    return Cni(topo, cnidriver, cni_path, cache)


@pytest.fixture
def servers(topo):
    """serve(ns, address, port): an echo server (beds.services.SERVER) in namespace `ns`, stopped after the test."""
    started = []

    def serve(ns, address, port):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, address, str(port)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
    yield serve
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture
def container_id():
    """A fresh, libcni-valid container ID."""
    return "rtt-" + uuid.uuid4().hex
