"""What the node needs to run the plugin, tried the way the plugin runs: `prerequisites(runner, routes_via_host)`
gives a Check each for python3, ip -json, nsenter and nft; `nft_versions(here, node)` whether the nft that runs
here (an image's, where the watcher repairs) writes nothing the node's nft cannot read. doctor reports them;
`route install --node-root` runs them chrooted into the node and refuses on a FAIL, telling what a probe `said`."""
import json
import re

from .. import PYTHON_LAUNCH
from ..errors import CommandFailed
from ..interpreter import OLDEST
from ..runner import ANY_STATUS, Completed
from .verdicts import FAIL, Check, Docs, ok

# A runtime's PATH (docs/install.md#what-a-node-needs): the plugin's header searches it for python3 (PYTHON_LAUNCH), and
# the plugin for ip, nsenter and nft.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_PROBE = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"
# As dist/route's header starts it. $0 is the name sh puts before its own errors ("sh: 1: exec: python3: not
# found"): the probe goes in $1, or a node without python3 would be told the probe's source.
PYTHON_STARTED = ["/bin/sh", "-c", f'{PYTHON_LAUNCH} -c "$1"', "sh", PYTHON_PROBE]
# nft writes user data on sets from this version on, which older nft crashes reading (kubernetes #136786), whoever
# lists the sets: kube-proxy in nftables mode, the plugin. route's masquerade rules use sets (nft.py), written by
# the node's nft (the plugin) and by the image's (the watcher).
NFT_SET_USERDATA = (1, 1, 2)


def prerequisites(runner, routes_via_host):
    """What the node needs to run the plugin, tried the way the plugin runs: python3 as its first line finds it,
    ip with -json, nsenter, and nft (a FAIL only when `routes_via_host`)."""
    return [_python3(runner), _ip_json(runner), _program(runner, "nsenter", "util-linux", "the plugin needs it"),
            _program(runner, "nft", "nftables", "routeViaHost needs it" if routes_via_host else None)]


def nft_versions(here, node):
    """Whether `here`'s nft (the one this process runs: the image's, in the DaemonSet) writes only what `node`'s
    nft can read: a FAIL when it is NFT_SET_USERDATA or newer and the node's is older."""
    try:
        mine = nft_version(here.query(["--version"], "nft", ok=ANY_STATUS).out)
    except CommandFailed:  # no nft here: the watcher writes no nft state
        mine = None
    theirs = nft_version(_probe(node, ["nft", "--version"]).out)
    if mine is None or theirs is None:
        return ok("nft versions", f"not compared: {'no nft here' if mine is None else 'the node has no nft'}",
                  Docs.PROGRAMS)
    found = f"this nft {_dotted(mine)}, the node's {_dotted(theirs)}"
    if mine >= NFT_SET_USERDATA > theirs:
        return Check("nft versions", FAIL, f"{found}: this one writes set data the node's crashes reading (so does "
                     "kube-proxy's in nftables mode), and the watcher repairs the masquerade rules' sets with it",
                     (f"# build the image on a base whose nft is older than {_dotted(NFT_SET_USERDATA)} (Debian 12: "
                      f"1.0.6), or give the node nft {_dotted(NFT_SET_USERDATA)} or newer",), Docs.PROGRAMS)
    return ok("nft versions", f"{found}: the node's reads what this one writes", Docs.PROGRAMS)


def nft_version(text):
    """(1, 0, 6) of `nft --version`'s "nftables v1.0.6 (Lester Gooch #5)"; None when it says no version."""
    found = re.search(r"\bv(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(n or 0) for n in found.groups()) if found else None


def _dotted(version):
    return ".".join(map(str, version))


def said(done):
    """The first line a probe (a runner.Completed) printed, or its exit status."""
    text = done.err.strip() or done.out.strip()
    return text.splitlines()[0] if text else f"exit {done.status}"


def _probe(runner, argv):
    """`/usr/bin/env PATH=<a runtime's PATH> ARGV`: the program a runtime's plugin would find."""
    try:
        return runner.query([f"PATH={NODE_PATH}", *argv], "/usr/bin/env", ok=ANY_STATUS)
    except CommandFailed as e:  # /usr/bin/env (or chroot) itself is missing, or it hung
        return Completed(127, "", str(e))


def _python3(runner):
    done = _probe(runner, PYTHON_STARTED)
    wanted = f"{OLDEST[0]}.{OLDEST[1]}"
    words = done.out.split()
    if done.status == 0 and len(words) == 2:
        executable, version = words
        numbers = tuple(int(n) for n in version.split(".")[:2] if n.isdigit())
        if numbers >= OLDEST:
            return ok("python3", f"{executable} is Python {version} (the plugin's `exec python3` finds it)",
                      Docs.PROGRAMS)
        return Check("python3", FAIL, f"{executable} is Python {version}; route needs Python {wanted} or newer",
                     (f"# install python3 {wanted} or newer where a runtime's PATH finds it first ({NODE_PATH}), "
                      "or keep this node out of the networks that chain route",), Docs.PROGRAMS)
    return Check("python3", FAIL,
                 f"no python3 runs: `/bin/sh -c '{PYTHON_LAUNCH}'` with PATH={NODE_PATH}: {said(done)}",
                 (f"# install python3 {wanted} or newer; node systems without one (Flatcar, Talos, Bottlerocket) "
                  "cannot run route",), Docs.PROGRAMS)


def _ip_json(runner):
    done = _probe(runner, ["ip", "-json", "link", "show", "dev", "lo"])
    try:
        works = done.status == 0 and isinstance(json.loads(done.out), list)
    except ValueError:
        works = False
    if works:
        return ok("ip -json", _probe(runner, ["ip", "-V"]).out.strip() or "ip -json works", Docs.PROGRAMS)
    if done.status == 127:
        return Check("ip -json", FAIL, f"no ip: {said(done)}", ("# install iproute2 4.19 or newer",), Docs.PROGRAMS)
    return Check("ip -json", FAIL, f"ip -json does not work (iproute2 older than 4.19?): {said(done)}",
                 ("# install iproute2 4.19 or newer",), Docs.PROGRAMS)


def _program(runner, name, package, needed_because):
    """A FAIL when the program does not run and `needed_because` says why it must."""
    done = _probe(runner, [name, "--version"])
    if done.status == 0:
        return ok(name, done.out.strip().splitlines()[0] if done.out.strip() else f"{name} runs", Docs.PROGRAMS)
    if not needed_because:
        return ok(name, f"not found ({said(done)}); only networks with routeViaHost need it", Docs.PROGRAMS)
    return Check(name, FAIL, f"not found: {said(done)}; {needed_because}", (f"# install {package}",), Docs.PROGRAMS)
