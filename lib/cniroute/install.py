"""`route install` and `route uninstall`: put the running one-file build (dist/route) into a CNI bin dir.

    route install   [--bin-dir /opt/cni/bin] [--name route] [--conf-dir DIR --conflist FILE] [--force]
                    [--node-root DIR]
    route uninstall [--bin-dir /opt/cni/bin] [--name route] [--conf-dir DIR --conflist FILE]

install copies the file that is running (never a source tree's bin/route, which needs lib/ beside it):
a temp file in the bin dir, fsync, chmod 0755, rename over the target, fsync the dir. Processes still
running the old file keep it (dist/route imports through its own open descriptor). The same content again
changes nothing. A different route build is replaced; anything else there (another program, a symlink)
only with --force. A conflist is written only when asked; an existing, different one only with --force.
With --node-root (the node's / as a container mounts it, as the DaemonSet does), install first checks, chrooted
there, that the node can run the plugin (doctor.prerequisites: its python3, ip -json, nsenter) and that its nft
reads what this one (the image's, which the watcher runs) writes, and refuses in one line naming what is missing.

uninstall removes only what this build's install would have put there: the bin file if its bytes are this
build's, the conflist if its bytes are FILE's. Anything that differs stays, and it says why.

Every check is made before anything is changed: a refusal changes nothing.
"""
import hashlib
import io
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
import zipfile
from collections import namedtuple

from . import files

VERBS = ("install", "uninstall")
DEFAULT_BIN_DIR = "/opt/cni/bin"
BUNDLE_INFO = "cniroute/_bundle.json"
MAX_TARGET = 256 << 20  # bytes of a file already at the target that install reads to compare (a CNI plugin)
DEPENDENCIES = ("sh", "jsonschema", "attrs", "pyrsistent")
CHROOT_FAILED = 125  # chroot's status when chroot itself fails, not the command it runs (coreutils)


class Refused(Exception):
    pass


# What install or uninstall will do with one file: action is "write", "same" (already this content),
# "remove" or "absent" (nothing to remove); was describes what is there now.
FilePlan = namedtuple("FilePlan", "path data action was")


# What --help says, for the administrator who puts the plugin on a node (by hand, or the DaemonSet's init container).
DESCRIPTIONS = {
    "install": """\
Put this one-file build of the plugin (dist/route) into a CNI bin dir, where the container runtime finds it: for
the administrator of a node, by hand or as the DaemonSet's init container does on every node. The copy replaces
the file at once (processes still running the old one keep it); the same build again changes nothing. Another
route build there is replaced; anything else (another program, a symlink) only with --force. A conflist is
copied into the conf dir only when asked (--conf-dir with --conflist), over a different one only with --force.

With --node-root (the node's / as a container mounts it), it first checks that the node can run the plugin
(python3 3.9 or newer, ip with -json, nsenter) and that the node's nft reads the sets this one (the image's, which
the watcher runs) writes, and installs nothing if not, saying in one line what is missing.
Every check is made before anything changes: a refusal changes nothing.""",
    "uninstall": """\
Take away what `route install` of this build put into a CNI bin dir and conf dir: the plugin file if its bytes
are this build's, the conflist if its bytes are FILE's. Anything that differs stays, and it says why. For the
administrator who removes the plugin from a node.""",
}


def add_parser(sub):
    for verb in VERBS:
        where = "into" if verb == "install" else "from"
        p = sub.add_parser(verb, help=f"{verb} this one-file build {where} a CNI bin dir (see docs/install.md)",
                           description=DESCRIPTIONS[verb])
        p.add_argument("--bin-dir", default=DEFAULT_BIN_DIR, help=f"CNI bin dir (default {DEFAULT_BIN_DIR})")
        p.add_argument("--name", default="route", help="file name there = the plugin's `type` (default route)")
        p.add_argument("--conf-dir", help="CNI conf dir (e.g. /etc/cni/net.d); needs --conflist")
        p.add_argument("--conflist", help="a conflist file to copy into --conf-dir under its own name")
        if verb == "install":
            p.add_argument("--force", action="store_true",
                           help="replace a bin file that is not a route build, or a different conflist")
            p.add_argument("--node-root", metavar="DIR",
                           help="the node's / as mounted here: first check, chrooted there, that the node can run "
                                "route (python3 >= 3.9, ip -json, nsenter), and install nothing if not")
        p.set_defaults(handler=handle)


def handle(args, host=None):
    prog = f"route {args.verb}"
    try:
        if (args.conf_dir is None) != (args.conflist is None):
            raise Refused("--conf-dir and --conflist go together")
        if args.name in ("", ".", "..") or "/" in args.name:
            raise Refused(f"--name {args.name!r} must be a plain file name")
        artifact = running_artifact()
        if artifact is None:
            raise Refused("this is a source tree's bin/route, a launcher that needs lib/ beside it; only the "
                          "one-file build can be installed. Build it with `python3 tools/build_dist.py`, then "
                          f"run `dist/route {args.verb} ...`")
        if args.verb == "install":
            return _install(prog, args, artifact)
        return _uninstall(prog, args, artifact)
    except Refused as e:
        print(f"{prog}: refused, nothing changed: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{prog}: failed: {e}", file=sys.stderr)
        return 1


class Artifact:
    def __init__(self, started, read_from):
        self.started = started  # the path it was started as
        with open(read_from, "rb") as f:  # the running inode, even if `started` was replaced since
            self.data = f.read()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.info = bundle_info() or {}

    def label(self):
        return f"route {self.info.get('route', '?')}, sha256 {self.sha256[:16]}, {len(self.data)} bytes"


def running_artifact():
    """The one-file build this process runs from, or None when running from a source tree."""
    archive = getattr(getattr(__spec__, "loader", None), "archive", None)  # set by zipimport only
    if archive is None:
        return None
    boot = sys.modules.get("_route_boot")
    started = getattr(boot, "ARCHIVE", None) or os.path.abspath(sys.argv[0])
    return Artifact(started, archive)


def bundle_info():
    """cniroute/_bundle.json of the running build (None from a source tree)."""
    try:
        data = pkgutil.get_data(__package__, "_bundle.json")
    except OSError:
        return None
    return json.loads(data) if data else None


def dependencies_line():
    """The line `route --version` adds: what it runs with besides the stdlib."""
    info = bundle_info()
    if info:
        deps = ", ".join(f"{name} {version}" for name, version in info["bundled"].items())
        code = info.get("bytecode", {})
        commit = (info.get("commit") or "unknown")[:12]
        return f"bundled: {deps} (bytecode for {code.get('cache_tag', '?')}, commit {commit})"
    from importlib import metadata

    found = []
    for name in DEPENDENCIES[:2]:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} MISSING")
    return f"not bundled (source tree), from this python: {', '.join(found)}"


def describe(path):
    """What a file is: 'route X (sha256 ...)' for a route build, else a short description."""
    try:
        with zipfile.ZipFile(io.BytesIO(files.read_bytes(path, MAX_TARGET, follow=True))) as z:
            info = json.loads(z.read(BUNDLE_INFO))
        return True, f"route {info.get('route', '?')} build"
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False, "not a route build"


def _plan_write(path, data, what, force, ours):
    """The FilePlan for putting `data` at `path` ("write" or "same"); raises Refused.
    `ours(path)` -> (bool, description) says whether a different file there may be replaced without --force."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise Refused(f"{directory} is not a directory (is the host's directory mounted there?)")
    try:
        os.lstat(path)
    except FileNotFoundError:
        return FilePlan(path, data, "write", "absent")
    if os.path.islink(path):
        if not force:
            raise Refused(f"{path} is a symlink to {os.readlink(path)}; --force replaces the link with {what}")
        return FilePlan(path, data, "write", f"a symlink to {os.readlink(path)}")
    try:
        current = files.read_bytes(path, max(MAX_TARGET, len(data)))
    except OSError as e:
        raise Refused(f"{path} exists and cannot be read as a regular file: {e}") from None
    if current == data:
        return FilePlan(path, data, "same", "already this content")
    is_ours, description = ours(path)
    if not is_ours and not force:
        raise Refused(f"{path} exists and differs ({description}, sha256 {hashlib.sha256(current).hexdigest()[:16]}); "
                      f"--force replaces it with {what}")
    return FilePlan(path, data, "write", description)


def write_atomic(path, data, mode):
    """Temp file in the same dir, write, chmod, fsync, rename over `path`, fsync the dir."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory or ".")


def _fsync_dir(directory):
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read_conflist(args, check):
    """(target path in --conf-dir, bytes) of --conflist. With `check`: refused unless it is JSON with a plugin
    of type --name whose config (as the runtime will pass it) this plugin accepts."""
    try:
        data = files.read_bytes(args.conflist, follow=True)  # a config: as the plugin's stdin, at most 1 MiB
    except OSError as e:
        raise Refused(f"cannot read --conflist: {e}") from None
    target = os.path.join(args.conf_dir, os.path.basename(args.conflist))
    if not check:
        return target, data
    try:
        document = json.loads(data)
        plugins = document["plugins"]
        mine = [p for p in plugins if p.get("type") == args.name]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Refused(f"{args.conflist} is not a conflist (JSON with a `plugins` list): {e}") from None
    if not mine:
        raise Refused(f"{args.conflist} has no plugin of type {args.name!r}")
    from . import config
    from .errors import CNIError

    for plugin in mine:
        merged = {"cniVersion": document.get("cniVersion"), "name": document.get("name"), **plugin}
        try:
            config.load(merged)
        except CNIError as e:
            raise Refused(f"{args.conflist}: the {args.name!r} entry is invalid: {e}") from None
    return target, data


def _install(prog, args, artifact):
    node = _require_runnable_node(args.node_root) if args.node_root else None
    binary = _plan_write(os.path.join(args.bin_dir, args.name), artifact.data,
                         f"this build ({artifact.label()})", args.force, describe)
    conf = None
    if args.conflist:
        conf = _plan_write(*_read_conflist(args, check=True), args.conflist, args.force,
                           lambda path: (False, "a different conflist"))
    print(f"{prog}: this build: {artifact.started} ({artifact.label()})")
    if node:
        print(f"{prog}: the node ({args.node_root}) can run it: {node}")
    if binary.action == "same":
        if os.stat(binary.path).st_mode & 0o777 != 0o755:
            os.chmod(binary.path, 0o755)
            print(f"{prog}: unchanged: {binary.path} already is this build; mode set to 0755")
        else:
            print(f"{prog}: unchanged: {binary.path} already is this build")
    else:
        write_atomic(binary.path, binary.data, 0o755)
        print(f"{prog}: installed {binary.path} (was: {binary.was})")
    if conf and conf.action == "same":
        print(f"{prog}: unchanged: {conf.path} already has the content of {args.conflist}")
    elif conf:
        write_atomic(conf.path, conf.data, 0o644)
        print(f"{prog}: wrote {conf.path} from {args.conflist} (was: {conf.was})")
    answer = _version_of(binary.path)
    print(f"{prog}: checked: `CNI_COMMAND=VERSION {binary.path}` with {sys.executable} answers {answer}")
    print(f"{prog}: next, on the node itself (it runs {args.name} with the first `python3` on a runtime's PATH, "
          f">= 3.9; bytecode is used with python {artifact.info.get('bytecode', {}).get('python', '?')[:4]}):\n"
          f"  echo '{{\"cniVersion\":\"1.0.0\"}}' | CNI_COMMAND=VERSION <CNI bin dir>/{args.name}\n"
          f"  <CNI bin dir>/{args.name} --version\n"
          f"  then chain {{\"type\": \"{args.name}\", \"master\": ...}} after macvlan in the network's conflist"
          + ("" if conf else " (see deploy/net.d/ or deploy/multus-nad.yaml)")
          + "; a pod ADD logs to the conflist's logFile, or the runtime's log")
    return 0


def _require_runnable_node(root):
    """What the node at `root` runs the plugin with, in one line; Refused, naming what is missing, if it cannot."""
    from .doctor.prerequisites import nft_versions, prerequisites, said
    from .doctor.verdicts import FAIL
    from .journal import Journal
    from .runner import ANY_STATUS, NodeRoot, Runner

    if not os.path.isdir(root):
        raise Refused(f"--node-root {root} is not a directory (is the node's / mounted there?)")
    runner = Runner(Journal(), host=NodeRoot(root))
    entered = runner.query([], "true", ok=ANY_STATUS)
    if entered.status == CHROOT_FAILED:  # every probe would fail the same way, and blame what it probes
        raise Refused(f"cannot look at the node's programs: {said(entered)} (chroot {root} needs the "
                      "SYS_CHROOT capability)")
    checks = prerequisites(runner, routes_via_host=False) + [nft_versions(Runner(Journal()), runner)]
    missing = [f"{c.subject}: {c.found}" for c in checks if c.verdict == FAIL]
    if missing:
        raise Refused(f"the node ({root}) cannot run route: " + "; ".join(missing))
    return "; ".join(f"{c.subject}: {c.found}" for c in checks)


def _version_of(target):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    try:
        proc = subprocess.run([sys.executable, target], input='{"cniVersion":"1.0.0"}', capture_output=True,
                              text=True, timeout=60, env=dict(env, CNI_COMMAND="VERSION"))
    except subprocess.TimeoutExpired:
        raise OSError(f"{target} was written but did not answer VERSION within 60 s") from None
    if proc.returncode != 0:
        raise OSError(f"{target} was written but does not answer VERSION (rc={proc.returncode}): "
                      f"{(proc.stdout + proc.stderr)[-500:]}")
    return proc.stdout.strip()


def _plan_removal(path, data, what):
    """The FilePlan ("remove", or "absent": nothing there); Refused when something else is there."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return FilePlan(path, data, "absent", "absent")
    if os.path.islink(path):
        raise Refused(f"not removing {path}: it is not a regular file (not what install writes)")
    try:
        digest = hashlib.sha256(files.read_bytes(path, max(MAX_TARGET, len(data)))).hexdigest()
    except OSError:
        raise Refused(f"not removing {path}: it is not a regular file (not what install writes)") from None
    if digest != hashlib.sha256(data).hexdigest():
        raise Refused(f"not removing {path}: its content (sha256 {digest[:16]}, {describe(path)[1]}) is not {what}; "
                      "remove it with the uninstall of the build that installed it, or by hand")
    return FilePlan(path, data, "remove", "this content")


def _uninstall(prog, args, artifact):
    binary = _plan_removal(os.path.join(args.bin_dir, args.name), artifact.data,
                           f"this build's ({artifact.label()})")
    if args.conflist:  # the conflist first: a runtime never sees a network whose plugin is gone
        _remove(prog, _plan_removal(*_read_conflist(args, check=False), f"that of {args.conflist}"))
    _remove(prog, binary)
    return 0


def _remove(prog, plan):
    if plan.action == "absent":
        print(f"{prog}: nothing to remove: no {plan.path}")
        return
    os.unlink(plan.path)
    _fsync_dir(os.path.dirname(plan.path))
    print(f"{prog}: removed {plan.path}")
