"""Entry point: CNI environment + stdin -> verb -> stdout. The one place errors become CNI error JSON.

stdout carries only the result or the error; the log of what was done goes to stderr.
"""
import json
import os
import re
import sys
import time

from . import SUPPORTED_VERSIONS, __version__, config, plugin
from .errors import CNIError, InvalidEnvironment
from .runner import Journal, Runner

# Which CNI_* variables each verb needs (CNI spec, "Parameters"); CNI_NETNS is optional for DEL.
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "VERSION": (),
}
VERBS = {"ADD": plugin.add, "DEL": plugin.delete, "CHECK": plugin.check}
# libcni's rules: a container ID is alphanumerics then '_', '.', '-'; an ifname here is what schemas/ allows.
CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
IFNAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9_.\-]{1,15}\Z")


def main(execute=None):
    """Run one CNI call from os.environ and stdin. `execute` replaces the ip executor (tests)."""
    started = time.time()
    journal = Journal()
    version = SUPPORTED_VERSIONS[-1]  # for error JSON until the config says otherwise
    try:
        inv = invocation_from_env(os.environ)
        document = config.decode(sys.stdin.buffer.read(config.MAX_STDIN + 1))
        if inv.command == "VERSION":
            return _print(plugin.version(document))
        version = config.requested_version(document)
        conf = config.load(document)
        version = conf.version
        journal.comment(_header(started, inv, conf))
        output = VERBS[inv.command](conf, inv, Runner(journal, execute=execute))
        if output is not None:
            _print(output)
        return 0
    except CNIError as e:
        journal.comment(f"error code {e.code}: {e}")
        _print({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})
        return 1
    except Exception as e:  # a bug: still answer in CNI terms, never with a traceback on stdout
        journal.comment(f"internal error: {type(e).__name__}: {e}")
        _print({"cniVersion": version, "code": 999, "msg": "internal error", "details": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        if journal.lines:
            sys.stderr.write(journal.text())


def invocation_from_env(env):
    command = env.get("CNI_COMMAND")
    if command not in REQUIRED_ENV:
        raise InvalidEnvironment("invalid CNI_COMMAND" if command else "missing CNI_COMMAND",
                                 f"got {command!r}; expected one of {', '.join(REQUIRED_ENV)}")
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise InvalidEnvironment(f"missing {', '.join(missing)}", f"required for {command}")
    container_id, ifname = env.get("CNI_CONTAINERID"), env.get("CNI_IFNAME")
    if container_id is not None and REQUIRED_ENV[command] and not CONTAINER_ID.match(container_id):
        raise InvalidEnvironment("invalid CNI_CONTAINERID", f"{container_id!r}: use letters, digits, '_', '.', '-'")
    if ifname is not None and REQUIRED_ENV[command] and not IFNAME.match(ifname):
        raise InvalidEnvironment("invalid CNI_IFNAME", f"{ifname!r} is not an interface name this plugin accepts")
    return plugin.Invocation(command, container_id, env.get("CNI_NETNS"), ifname)


def _header(started, inv, conf):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + f".{int(started % 1 * 1000):03d}Z"
    return (f"route {__version__} pid {os.getpid()} {stamp} {inv.command} container={inv.container_id}"
            f" ifname={inv.ifname} netns={inv.netns} network={conf.name} cniVersion={conf.version}")


def _print(document):
    sys.stdout.write(json.dumps(document) + "\n")
    return 0
