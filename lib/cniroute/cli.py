"""Entry point: CNI environment + stdin -> verb -> stdout. The one place errors become CNI error JSON.

stdout carries only the result or the error. The replayable log block goes to `logFile`, or to stderr.
With arguments, the executable serves a person instead (`route replay ...`, `route --version`).
"""
import json
import os
import re
import sys

from . import SUPPORTED_VERSIONS, config, interpreter, plugin
from .errors import CNIError, InvalidEnvironment
from .journal import Journal, append_block
from .runner import Runner

# Which CNI_* variables each verb needs (CNI spec, "Parameters"); CNI_NETNS is optional for DEL.
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
VERBS = {"ADD": plugin.add, "DEL": plugin.delete, "CHECK": plugin.check, "GC": plugin.gc, "STATUS": plugin.status}
CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")  # libcni's rule


def main(argv=None, host=None):
    """Run one CNI call from os.environ and stdin. `host` replaces the real one (unit tests)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from . import person
        return person.main(argv, host)
    journal = Journal()
    version = SUPPORTED_VERSIONS[-1]  # for error JSON until the config says otherwise
    conf = None
    try:
        interpreter.require_packages()
        inv = invocation_from_env(os.environ, journal)
        document = config.decode(sys.stdin.buffer.read(config.MAX_STDIN + 1))
        if inv.command == "VERSION":
            return _print(plugin.version(document))
        version = config.requested_version(document)
        conf = config.load(document)
        journal.header.update(network=conf.name, cniVersion=conf.version)
        dry_run = conf.dry_run or os.environ.get("CNI_ROUTE_DRY_RUN") == "1"
        runner = Runner(journal, timeout=conf.ip_timeout, dry_run=dry_run, host=host)
        output = VERBS[inv.command](conf, inv, runner)
        if output is not None:
            _print(output)
        return 0
    except CNIError as e:
        journal.comment(f"error code {e.code}: {e}")
        _print({"cniVersion": version, "code": e.code, "msg": _clip(e.msg), "details": _clip(e.details)})
        return 1
    except Exception as e:  # a bug: still answer in CNI terms, never with a traceback
        journal.comment(f"internal error: {type(e).__name__}: {e}")
        _print({"cniVersion": version, "code": 999, "msg": "internal error", "details": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        if journal.header:
            _write_log(journal, conf)


def invocation_from_env(env, journal):
    command = env.get("CNI_COMMAND")
    journal.header.update(command=command or "-", container=env.get("CNI_CONTAINERID"),
                          ifname=env.get("CNI_IFNAME"), netns=env.get("CNI_NETNS"))
    if command not in REQUIRED_ENV:
        raise InvalidEnvironment("invalid CNI_COMMAND" if command else "missing CNI_COMMAND",
                                 f"got {command!r}; expected one of {', '.join(REQUIRED_ENV)}")
    if command == "VERSION":
        journal.header.clear()  # nothing to log
        return plugin.Invocation(command)
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise InvalidEnvironment(f"missing {', '.join(missing)}", f"required for {command}")
    if "CNI_CONTAINERID" not in REQUIRED_ENV[command]:  # GC and STATUS are about the network, not a pod
        return plugin.Invocation(command)
    container_id, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    if not CONTAINER_ID.match(container_id):
        raise InvalidEnvironment("invalid CNI_CONTAINERID", f"{container_id!r}: use letters, digits, '_', '.', '-'")
    if not config.IFNAME.match(ifname):
        raise InvalidEnvironment("invalid CNI_IFNAME", f"{ifname!r} is not an interface name this plugin accepts")
    return plugin.Invocation(command, container_id, env.get("CNI_NETNS"), ifname)


def _write_log(journal, conf):
    text = journal.text()
    if conf is not None and conf.log_file:
        try:
            append_block(conf.log_file, text, conf.log_max_bytes)
            return
        except OSError as e:  # the log must never fail the call; say so where the runtime looks
            sys.stderr.write(f"route: cannot write log {conf.log_file}: {e}\n")
    sys.stderr.write(text)


def _clip(text, limit=2000):
    """Schema messages quote the offending value, which may be a megabyte of hostile input."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _print(document):
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()  # the runtime has its answer before the log is written, whatever happens to the log
    return 0
