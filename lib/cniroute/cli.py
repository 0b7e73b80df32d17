"""Entry point: CNI environment + stdin -> verb -> stdout. The one place errors become CNI error JSON.

stdout carries only the result or the error. The replayable log block goes to `logFile`, or to stderr.
With arguments, or without CNI_COMMAND in the environment (a person typed `route`), the executable serves a
person instead (`route replay ...`, `route --version`, the usage).

The first thing every call does is interpreter.require_python(): a python3 older than the plugin needs answers
code 106 with the version found and the version needed. So this module, and what it imports at the top
(errors, interpreter), are written in Python 3.4's syntax (no f-strings), and everything else is imported only
after that check.
"""
import json
import os
import re
import sys

from . import SUPPORTED_VERSIONS, interpreter
from .errors import CNIError, InvalidEnvironment, UnsuitableInterpreter

# Which CNI_* variables each verb needs (CNI spec, "Parameters"); CNI_NETNS is optional for DEL.
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
VERBS = {"ADD": "add", "DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}  # in plugin.py
CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")  # libcni's rule


def run():
    """The launchers' entry (bin/route, dist/route): main(), then the process ends with its status at once.

    Without the interpreter's teardown, which frees every module and object one by one and collects garbage a
    last time: ~5 ms of CPU, a tenth of an ADD. Nothing is left for it to do: stdout and stderr are flushed
    here, the log and state files are written with os.write and closed, locks are closed file descriptors,
    and sh's threads ended with their commands."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader is gone: nothing would reach it at teardown either
            pass
    os._exit(code)


def main(argv=None, host=None):
    """Run one CNI call from os.environ and stdin, or with arguments a person's command. `host` replaces the real
    one (unit tests)."""
    argv = sys.argv[1:] if argv is None else argv
    # A runtime always sets CNI_COMMAND; without it, a person typed `route`: the usage, not CNI error JSON.
    by_person = bool(argv) or "CNI_COMMAND" not in os.environ
    try:
        interpreter.require_python()
    except UnsuitableInterpreter as e:
        if by_person:
            sys.stderr.write("route cannot run here (code {}): {}\n".format(e.code, e))
            return 1
        return _answer_error(SUPPORTED_VERSIONS[-1], e)
    if by_person:
        from . import person
        return person.main(argv, host)
    return _call(host)


def _call(host):
    from . import config, plugin
    from .journal import Journal
    from .runner import Runner

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
        output = getattr(plugin, VERBS[inv.command])(conf, inv, runner)
        if output is not None:
            _print(output)
        return 0
    except CNIError as e:
        journal.comment("error code {}: {}".format(e.code, e))
        return _answer_error(version, e)
    except Exception as e:  # a bug: still answer in CNI terms, never with a traceback
        bug = "{}: {}".format(type(e).__name__, e)
        journal.comment("internal error: " + bug)
        _print({"cniVersion": version, "code": 999, "msg": "internal error", "details": bug})
        return 1
    finally:
        if journal.header:
            _write_log(journal, conf)


def invocation_from_env(env, journal):
    from . import config, plugin

    command = env.get("CNI_COMMAND")
    journal.header.update(command=command or "-", container=env.get("CNI_CONTAINERID"),
                          ifname=env.get("CNI_IFNAME"), netns=env.get("CNI_NETNS"))
    if command not in REQUIRED_ENV:
        raise InvalidEnvironment("invalid CNI_COMMAND" if command else "missing CNI_COMMAND",
                                 "got {!r}; expected one of {}".format(command, ", ".join(REQUIRED_ENV)))
    if command == "VERSION":
        journal.header.clear()  # nothing to log
        return plugin.Invocation(command)
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise InvalidEnvironment("missing " + ", ".join(missing), "required for " + command)
    if "CNI_CONTAINERID" not in REQUIRED_ENV[command]:  # GC and STATUS are about the network, not a pod
        return plugin.Invocation(command)
    container_id, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    if not CONTAINER_ID.match(container_id):
        raise InvalidEnvironment("invalid CNI_CONTAINERID",
                                 "{!r}: use letters, digits, '_', '.', '-'".format(container_id))
    if not config.IFNAME.match(ifname):
        raise InvalidEnvironment("invalid CNI_IFNAME",
                                 "{!r} is not an interface name this plugin accepts".format(ifname))
    return plugin.Invocation(command, container_id, env.get("CNI_NETNS"), ifname)


def _write_log(journal, conf):
    from .journal import deliver

    deliver(journal.text(), *((conf.log_file, conf.log_max_bytes) if conf is not None else ()))


def _answer_error(version, error):
    """Print the CNI error JSON of a CNIError; the exit status."""
    _print({"cniVersion": version, "code": error.code, "msg": _clip(error.msg), "details": _clip(error.details)})
    return 1


def _clip(text, limit=2000):
    """Schema messages quote the offending value, which may be a megabyte of hostile input."""
    return text if len(text) <= limit else text[:limit] + "... ({} more characters)".format(len(text) - limit)


def _print(document):
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()  # the runtime has its answer before the log is written, whatever happens to the log
    return 0
