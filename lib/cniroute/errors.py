"""The plugin's one error hierarchy. Each class carries its CNI error code; cli turns them into error JSON.

Python 3.4's syntax: an old python3 imports this before it is told it is too old (see interpreter.py)."""


class CNIError(Exception):
    """An error the runtime should see: code, short msg, optional details (CNI spec, "Error")."""

    code = 999

    def __init__(self, msg, details=""):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self):
        return "{}: {}".format(self.msg, self.details) if self.details else self.msg


class IncompatibleVersion(CNIError):
    code = 1


class InvalidEnvironment(CNIError):
    code = 4


class IOFailure(CNIError):
    code = 5


class DecodingFailure(CNIError):
    code = 6


class InvalidConfig(CNIError):
    code = 7


class TryAgainLater(CNIError):
    code = 11


class PluginNotAvailable(CNIError):
    code = 50


class CommandFailed(CNIError):
    """A host command (ip, a sysctl write) failed; msg carries the command line, details its stderr."""

    code = 100

    def __init__(self, msg, details="", status=None):
        super().__init__(msg, details)
        self.status = status  # the exit status, when it ran to the end


class CommandTimeout(CommandFailed):
    code = 101


class ReadTooLarge(CommandFailed):
    """A read printed as much as its caller reads of it, or more (runner.Runner.read's `limit`): what it reads is
    not as the plugin made it, and is not read whole."""


class ShimConflict(CNIError):
    """A device with the shim's name exists but is not our bridge-mode macvlan on master."""

    code = 102


class CheckFailed(CNIError):
    """CHECK found the host out of shape."""

    code = 103


class PodUnreachable(CheckFailed):
    """route reconcile cannot look into a recorded pod: its namespace cannot be entered, or the path holds
    another one now (never a CNI call's answer: those enter the namespace the runtime names). `reason`, one of a
    few words (cannot_enter, another_namespace, no_nsenter), labels it in the watcher's figures."""

    def __init__(self, reason, msg, details=""):
        super().__init__(msg, details)
        self.reason = reason


class DeviceMissing(CNIError):
    """A device the plugin needs (the master) is not there."""

    code = 104


class HostNotReady(CNIError):
    """The node lacks something a configured feature needs (e.g. IP forwarding for routeViaHost)."""

    code = 105


class UnsuitableInterpreter(CNIError):
    """The python3 that runs the plugin cannot run it (a source tree's bin/route on a python3 without the
    packages; the one-file build carries them)."""

    code = 106


class AddressCollision(CNIError):
    """A pod IP is an address of the node or a next hop of one of its routes: routing it to the pod would cut
    the node off (from its gateway, or from itself)."""

    code = 107


class DamagedBuild(CNIError):
    """The one-file build cannot start: cut short or damaged (answered by its launcher, tools/build_dist.py,
    before any of the plugin's code is loaded)."""

    code = 108
