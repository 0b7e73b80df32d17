"""Whether NetworkManager or systemd-networkd manage a shim, which they may take down, strip or reconfigure; and
the drop-in that makes each leave it alone."""
import shlex
from collections import namedtuple

from ..errors import CommandFailed
from ..runner import ANY_STATUS, Completed
from .prerequisites import said
from .verdicts import OK, WARN, Check, Docs, ok


def check(runner, shim_name):
    """The shim's managers line: asked only in PID 1's network namespace, the only one they manage."""
    subject = f"{shim_name} managers"
    if not runner.host.in_nodes_network_namespace():
        return ok(subject, "not asked: this is not PID 1's network namespace, the only one NetworkManager and "
                           "systemd-networkd manage", Docs.MANAGERS)
    found, fix = [], []
    for manager in NETWORK_MANAGERS:
        done = _tool(runner, manager.query(shim_name), manager.program)
        state = done.status == 0 and manager.state(done.out, shim_name)
        if state and state != "unmanaged":
            found.append(f"{manager.name} manages it ({state}), and {manager.risk}")
            fix += manager.fix(shim_name)
        else:
            found.append(f"{manager.name}: " + _absent_or_idle(done))
    return Check(subject, WARN if fix else OK, "; ".join(found), tuple(fix), Docs.MANAGERS)


def _tool(runner, args, program):
    """Completed; its status is None when the program did not run (not installed, or it hung)."""
    try:
        return runner.query(args, program, ok=ANY_STATUS)
    except CommandFailed as e:
        return Completed(None, "", str(e))


def _absent_or_idle(done):
    """What a network manager's tool said when it did not claim the shim."""
    if done.status is None:
        return done.err  # e.g. "nmcli not found on PATH"
    return f"not running ({said(done)})" if done.status else "leaves it alone"


def nm_state(output, name):
    """The state NetworkManager gives device `name` in `nmcli -t -f DEVICE,STATE device status`, or None."""
    for line in output.splitlines():
        device, _, state = line.replace("\\:", "\0").partition(":")
        if device.replace("\0", ":") == name:
            return state.strip()
    return None


def networkd_state(output, name):
    """The SETUP column systemd-networkd gives link `name` in `networkctl list --no-legend`, or None."""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 5 and words[1] == name:
            return words[-1]
    return None


class NetworkManager(namedtuple("NetworkManager", "name program query state risk fix")):
    """A network manager that may claim the shim: its tool, the tool's arguments for a shim (`query`), the
    parser of its answer into the shim's state (`state`), what it may do to a shim it manages, and the
    commands that make it leave the shim alone (`fix`)."""

    __slots__ = ()


NETWORK_MANAGERS = (
    NetworkManager(
        "NetworkManager", "nmcli", lambda shim: ["-t", "-f", "DEVICE,STATE", "device", "status"], nm_state,
        "may take it down or strip its addresses",
        lambda shim: ["# tell NetworkManager to leave it alone (merge with an unmanaged-devices= line you have):",
                      f"printf '[keyfile]\\nunmanaged-devices=interface-name:%s\\n' {shlex.quote(shim)} > "
                      f"/etc/NetworkManager/conf.d/90-cni-route-{shim}.conf",
                      "nmcli general reload conf"]),
    NetworkManager(
        "systemd-networkd", "networkctl", lambda shim: ["list", "--no-legend", "--no-pager", shim], networkd_state,
        "may reconfigure it",
        lambda shim: ["# tell systemd-networkd to leave it alone:",
                      f"printf '[Match]\\nName=%s\\n\\n[Link]\\nUnmanaged=yes\\n' {shlex.quote(shim)} > "
                      f"/etc/systemd/network/00-cni-route-{shim}.network",
                      "networkctl reload"]),
)
