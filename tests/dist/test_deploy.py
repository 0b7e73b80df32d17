"""deploy/: the DaemonSet, its kustomize overlay for GKE, the Containerfile, and the example networks."""
import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess

from beds import manifests
import pytest
import yaml
from conftest import REPO

from cniroute import config, person
from cniroute.doctor.prerequisites import PYTHON_PROBE

DEPLOY = REPO / "deploy"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"  # busybox-static (tools/setup.sh): runs in any root


def load(name):
    docs = [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]
    assert len(docs) == 1, name
    return docs[0]


def daemonset():
    ds = manifests.daemonset()
    assert ds["apiVersion"] == "apps/v1" and ds["kind"] == "DaemonSet"
    return ds


def test_daemonset_runs_on_every_node_as_system_node_critical():
    ds = daemonset()
    assert ds["metadata"]["namespace"] == "kube-system"
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert spec["priorityClassName"] == "system-node-critical"
    tolerations = spec["tolerations"]
    for effect in ("NoSchedule", "NoExecute"):
        assert {"operator": "Exists", "effect": effect} in tolerations, tolerations  # any key: control plane too
    assert all(t["operator"] == "Exists" for t in tolerations)
    assert "nodeName" not in spec and "affinity" not in spec


def test_daemonset_checks_the_node_then_installs_with_an_init_container_then_runs_the_watcher():
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True  # the watcher repairs the node's own network namespace
    [init] = spec["initContainers"]
    assert init["command"] == ["route", "install", "--bin-dir", "/host/opt/cni/bin", "--node-root", "/node"]
    assert init["volumeMounts"] == [{"name": "cni-bin", "mountPath": "/host/opt/cni/bin"},
                                    {"name": "node-root", "mountPath": "/node", "readOnly": True}]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"  # the refusal line in `kubectl describe`
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_OVERRIDE", "SYS_CHROOT"]}
    [watcher] = spec["containers"]
    assert watcher["image"] == init["image"]
    assert watcher["command"][:3] == ["route", "reconcile", "--watch"]
    args = person.build_parser().parse_args(watcher["command"][1:])  # options this route accepts
    assert (args.state_dir, args.proc_sys, args.log_file) == ("/run/cni-route", "/host/proc/sys", "-")
    security = watcher["securityContext"]
    # only what it needs: NET_ADMIN for the node's network, SYS_ADMIN to enter pods (setns)
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]}
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert "privileged" not in security and "hostPID" not in spec
    for container in (init, watcher):
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert spec["volumes"][0]["name"] == "cni-bin"  # deploy/gke patches volumes/0
    assert volumes == {"cni-bin": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"},
                       "state": {"path": "/run/cni-route", "type": "DirectoryOrCreate"},
                       "proc-sys-net": {"path": "/proc/sys/net", "type": "Directory"},
                       "netns": {"path": "/var/run/netns", "type": "DirectoryOrCreate"},
                       "node-root": {"path": "/", "type": "Directory"}}
    mounts = {m["mountPath"]: volumes[m["name"]]["path"] for m in watcher["volumeMounts"]}
    # the pods' namespaces at the paths ADD recorded, and those made after the watcher started too
    assert mounts == {args.state_dir: config.DEFAULT_STATE_DIR, args.proc_sys + "/net": "/proc/sys/net",
                      "/var/run/netns": "/var/run/netns"}
    [netns] = [m for m in watcher["volumeMounts"] if m["name"] == "netns"]
    assert netns["mountPropagation"] == "HostToContainer" and netns["readOnly"] is True


def test_the_cni_bin_dir_is_a_marked_value_with_a_gke_overlay():
    text = (DEPLOY / "base" / "daemonset.yaml").read_text()
    assert re.search(r"path: /opt/cni/bin\s+# CNI_BIN_DIR.*GKE: /home/kubernetes/bin", text)
    assert "/home/kubernetes/bin" in text.split("apiVersion")[0]  # documented in the header too
    assert load("base/kustomization.yaml")["resources"] == ["daemonset.yaml"]
    assert load("kustomization.yaml")["resources"] == ["base"]
    overlay = yaml.safe_load((DEPLOY / "gke" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../base"]  # kustomize loads only files in or below an overlay
    [patch] = overlay["patches"]
    assert patch["target"] == {"kind": "DaemonSet", "name": "route-install"}
    [op] = yaml.safe_load(patch["patch"])
    assert op == {"op": "replace", "path": "/spec/template/spec/volumes/0/hostPath/path",
                  "value": "/home/kubernetes/bin"}
    # the JSON pointer names the hostPath of the base
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["volumes"][0]["hostPath"]["path"] == "/opt/cni/bin"


def test_containerfile():
    text = (DEPLOY / "Containerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    # the base is a build argument (tools/build-image.sh --base), python:3-slim unless told
    assert re.fullmatch(r"ARG BASE=(docker\.io/library/)?python:3(\.\d+)?-slim", lines[0]), lines[0]
    assert lines[1] == "FROM ${BASE}", lines[1]
    assert "COPY dist/route /usr/local/bin/route" in lines
    [install] = [line for line in lines if "apt-get install" in line]  # the watcher runs ip and nft
    assert {"iproute2", "nftables"} <= set(install.split())
    assert 'ENTRYPOINT ["route"]' in lines
    # the DaemonSet calls `route` by name: it must be on the image's PATH
    assert "/usr/local/bin" in "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def route_entries(conflist):
    return [p for p in conflist["plugins"] if p["type"] == "route"]


def check_chain(conflist):
    types = [p["type"] for p in conflist["plugins"]]
    assert types == ["macvlan", "route"], types
    macvlan, route = conflist["plugins"]
    assert route["master"] == macvlan["master"]
    assert conflist["cniVersion"] and conflist["name"]
    # the route entry is a config this plugin accepts, as libcni would pass it
    from cniroute import config

    config.load({"cniVersion": conflist["cniVersion"], "name": conflist["name"], **route})


def test_multus_network_attachment_definition():
    nad = load("multus-nad.yaml")
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1" and nad["kind"] == "NetworkAttachmentDefinition"
    check_chain(json.loads(nad["spec"]["config"]))


def test_the_sample_pod_asks_for_the_sample_network():
    """docs/quickstart.md applies both: the pod's annotation names the NetworkAttachmentDefinition, in its
    namespace."""
    pod, nad = load("sample-pod.yaml"), load("multus-nad.yaml")
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == nad["metadata"]["name"]
    assert pod["metadata"]["namespace"] == nad["metadata"]["namespace"]


def test_net_d_conflist():
    check_chain(json.loads((DEPLOY / "net.d" / "10-macvlan-route.conflist").read_text()))


# Stand-ins for the node's programs in a fake node root, as `sh` scripts run by a static busybox (its sh and env).
PYTHON3 = {"3.11": "#!/bin/sh\necho /usr/bin/python3\necho 3.11.2\n",
           "3.8": "#!/bin/sh\necho /usr/bin/python3\necho 3.8.10\n"}
IP = {"json": '#!/bin/sh\ncase "$1" in\n  -V) echo "ip utility, iproute2-6.1.0" ;;\n'
              '  -json) echo \'[{"ifindex":1,"ifname":"lo"}]\' ;;\n  *) exit 1 ;;\nesac\n',
      "old": '#!/bin/sh\ncase "$1" in\n  -V) echo "ip utility, iproute2-ss180129" ;;\n'
             '  *) echo "Option \\"$1\\" is unknown, try \\"ip -help\\"." >&2; exit 255 ;;\nesac\n'}
NSENTER = "#!/bin/sh\necho 'nsenter from util-linux 2.38.1'\n"
NODES = {  # name: (python3, ip, the line the install step must refuse with, or None)
    "good": (PYTHON3["3.11"], IP["json"], None),
    "no python3": (None, IP["json"], "python3: no python3 runs: `/bin/sh -c 'exec python3 -S -E'` with PATH="),
    "python3 3.8": (PYTHON3["3.8"], IP["json"], "python3: /usr/bin/python3 is Python 3.8.10; route needs Python 3.9 "
                                                "or newer"),
    "no ip -json": (PYTHON3["3.11"], IP["old"], 'ip -json: ip -json does not work (iproute2 older than 4.19?): '
                                                'Option "-json" is unknown, try "ip -help".'),
    "no shell at all": (None, None, "python3: no python3 runs"),  # Talos, Bottlerocket: not even /usr/bin/env
}


def fake_node_root(root, name):
    python3, ip, _ = NODES[name]
    (root / "opt" / "cni" / "bin").mkdir(parents=True)  # the hostPath, DirectoryOrCreate
    if name == "no shell at all":
        return root
    for directory in ("bin", "usr/bin", "usr/sbin"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "usr" / "bin" / "env").symlink_to("/bin/busybox")
    for path, text in (("usr/bin/python3", python3), ("usr/sbin/ip", ip), ("usr/bin/nsenter", NSENTER)):
        if text:
            (root / path).write_text(text)
            (root / path).chmod(0o755)
    return root


def install_step(dist_route, tmp_path, bare_env, node_root, capabilities=None):
    """The init container's command exactly as in the YAML, `route` found on PATH as in the image, each mount a
    link from a fake container root to where its hostPath is in the fake node root."""
    spec = daemonset()["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    image_bin = tmp_path / "image" / "usr" / "local" / "bin"
    image_bin.mkdir(parents=True, exist_ok=True)
    shutil.copy(dist_route, image_bin / "route")
    container_root = tmp_path / "container"
    mounts = {}
    for mount in init["volumeMounts"]:
        inside = container_root / mount["mountPath"].lstrip("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        if not inside.is_symlink():
            inside.symlink_to(node_root / volumes[mount["name"]].lstrip("/"))
        mounts[mount["mountPath"]] = str(inside)
    argv = [mounts.get(a, a) for a in init["command"]]
    assert [a.replace(str(container_root), "") for a in argv] == init["command"]
    env = dict(bare_env, PATH=f"{image_bin}:{bare_env['PATH']}")
    if capabilities is not None:  # root's capabilities limited to these, as a container's are
        argv = ["setpriv", f"--bounding-set=-all{''.join(',+' + c.lower() for c in capabilities)}", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_the_init_containers_command_installs_a_working_plugin_on_a_good_node(dist_route, tmp_path, bare_env):
    node = fake_node_root(tmp_path / "node", "good")
    proc = install_step(dist_route, tmp_path, bare_env, node)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "can run it: python3: /usr/bin/python3 is Python 3.11.2" in proc.stdout, proc.stdout
    installed = node / "opt" / "cni" / "bin" / "route"
    assert installed.read_bytes() == dist_route.read_bytes() and os.access(installed, os.X_OK)
    # the node runs it with its own python3 (here: the bare venv's)
    run = subprocess.run([str(installed)], input='{"cniVersion":"1.0.0"}', capture_output=True, text=True,
                         env=dict(bare_env, CNI_COMMAND="VERSION"), timeout=60)
    assert run.returncode == 0 and json.loads(run.stdout)["supportedVersions"], run.stderr
    # a restarted pod (node reboot, rollout of the same image) finds it already there
    again = install_step(dist_route, tmp_path, bare_env, node)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr


NODE = DEPLOY / "node" / "etc"


def unit_file(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_the_systemd_unit_runs_the_watcher_with_net_admin_only():
    unit = unit_file(NODE / "systemd" / "system" / "route-reconcile.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/cni/bin/route" and argv[1:3] == ["reconcile", "--watch"]
    args = person.build_parser().parse_args(argv[1:])
    assert args.state_dir == config.DEFAULT_STATE_DIR
    assert service["Restart"] == "always" and service["CapabilityBoundingSet"] == "CAP_NET_ADMIN CAP_SYS_ADMIN"
    assert service["ProtectSystem"] == "strict"
    assert {"-/run/cni-route", "-/var/log"} <= set(service["ReadWritePaths"].split())
    assert "ProtectKernelTunables" not in service  # the shim's sysctls are written under /proc/sys
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_networkd_keeps_foreign_routes_and_leaves_the_shims_alone():
    assert unit_file(NODE / "systemd" / "networkd.conf.d" / "90-route-cni.conf")["Network"]["ManageForeignRoutes"] \
        == "no"
    shims = unit_file(NODE / "systemd" / "network" / "00-route-cni-shim.network")
    assert shims["Link"]["Unmanaged"] == "yes"
    [pattern] = shims["Match"]["Name"].split()
    assert_matches_default_shims(pattern)


def test_networkmanager_leaves_the_shims_unmanaged():
    conf = unit_file(NODE / "NetworkManager" / "conf.d" / "90-route-cni.conf")
    [spec] = conf["keyfile"]["unmanaged-devices"].split(";")
    kind, pattern = spec.split(":", 1)
    assert kind == "interface-name"
    assert_matches_default_shims(pattern)


def assert_matches_default_shims(pattern):
    for master in ("eno1", "eth0", "enp0s31f6", "bond0"):
        assert fnmatch.fnmatchcase(config.shim_name(master), pattern), master
        assert not fnmatch.fnmatchcase(master, pattern), master


@pytest.mark.parametrize("name", [name for name, (_, _, refusal) in NODES.items() if refusal])
def test_a_node_that_cannot_run_the_plugin_gets_nothing_and_one_line_saying_why(dist_route, tmp_path, bare_env,
                                                                                name):
    node = fake_node_root(tmp_path / "node", name)
    proc = install_step(dist_route, tmp_path, bare_env, node)
    assert proc.returncode == 1 and proc.stdout == "", proc
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"route install: refused, nothing changed: the node ({tmp_path}/container/node) cannot "
                           "run route: "), line
    assert NODES[name][2] in line, line
    assert PYTHON_PROBE not in line, line  # the probe's source is no reason
    assert list((node / "opt" / "cni" / "bin").iterdir()) == []  # not even a temp file


def test_without_sys_chroot_the_refusal_says_so_and_blames_nothing_on_the_node(dist_route, tmp_path, bare_env):
    """A container without the SYS_CHROOT capability the DaemonSet adds cannot run one program of the node: the
    refusal names the capability, not python3, iproute2 or nsenter, which are all there."""
    node = fake_node_root(tmp_path / "node", "good")
    [init] = daemonset()["spec"]["template"]["spec"]["initContainers"]
    added = init["securityContext"]["capabilities"]["add"]
    assert "SYS_CHROOT" in added, added
    proc = install_step(dist_route, tmp_path, bare_env, node, capabilities=[c for c in added if c != "SYS_CHROOT"])
    assert proc.returncode == 1 and proc.stdout == "", proc
    [line] = proc.stderr.splitlines()
    assert line.startswith("route install: refused, nothing changed: cannot look at the node's programs: "), line
    assert "Operation not permitted" in line and line.endswith("needs the SYS_CHROOT capability)"), line
    for blamed in ("python3", "iproute2", "nsenter"):
        assert blamed not in line, line
    assert list((node / "opt" / "cni" / "bin").iterdir()) == []
