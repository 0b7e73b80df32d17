"""The lean import of sh (lean_sh.import_sh), each case in a fresh interpreter: the plugin's process
loads none of the modules sh is given stand-ins for, and sh behaves for any other code exactly as when
imported plainly, its async API and its logging included. Needs processes, so these are not unit tests.

The checks take `sh_from`, a path to import sh from (tests/dist runs them on the sh that dist/route bundles);
None: the sh installed for this interpreter.
"""
import json
import os
import re
import subprocess
import sys

LIB = os.path.join(os.path.dirname(__file__), "..", "..", "lib")

# The plugin's own import set, then sh the plugin's way.
LEAN = r"""
import sys
sys.path[:0] = sys.argv[1:]
from cniroute import cli  # noqa: F401
from cniroute.host import SystemHost
from cniroute.lean_sh import STAND_INS
host = SystemHost()
"""

STATE = LEAN + r"""
import json
loaded = sorted(name for name in STAND_INS if name in sys.modules)
typing_loaded = "typing" in sys.modules  # the costliest of sh's imports (1.5 ms), which it uses for one annotation
def stand_in(value):
    return type(value) is type(sys) and str(value.__doc__).startswith("stands in for")
holders = sorted(name for name, module in list(sys.modules.items())
                 if name != "sh" and any(stand_in(v) for v in vars(module or sys).values()))
sh_holds = sorted(name for name, value in vars(sys.modules["sh"]._SelfWrapper__self_module).items() if stand_in(value))
status, out, err = host.execute(["ip", "-json", "link", "show", "lo"], None, 10)
lines = host.execute(["ip", "-json", "-batch", "-"], "link show lo\nlink show lo\n", 10)[1].count('"ifname":"lo"')
loaded_by_calls = sorted(name for name in STAND_INS if name in sys.modules)
import ssl
from importlib import metadata
print(json.dumps({"loaded": loaded, "holders": holders, "status": status, "lo": '"ifname":"lo"' in out,
                  "batch": lines, "typing": typing_loaded, "sh_holds": sh_holds, "loaded_by_calls": loaded_by_calls,
                  "ssl": ssl.OPENSSL_VERSION.split()[0], "version": metadata.version("sh")}))
"""

PLAIN = r"""
import sys
sys.path[:0] = sys.argv[1:]
import sh
"""

# What other code may do with sh after the plugin imported it: every observation is printed, with pids and
# addresses blanked, so that the plain import and the lean one can be compared line for line.
BEHAVIOUR = r"""
import io, json, os, re, stat, sys, tempfile
import sh

seen = {}
def blank(value):
    if isinstance(value, (list, tuple)):
        return [blank(v) for v in value]
    return value if isinstance(value, (bool, int)) else re.sub(r"0x[0-9a-f]+|\d+", "N", str(value))
def record(key, fn):
    try:
        seen[key] = blank(fn())
    except Exception as e:
        seen[key] = blank(f"{type(e).__name__}: {e}")

record("version", lambda: sh.__version__ != "")
record("call", lambda: sh.echo("hi"))
record("exit code", lambda: sh.false())  # ErrorReturnCode_1, its message formatted with textwrap
record("iter", lambda: list(sh.printf("a\nb\n", _iter=True)))
lines = []
record("callback 1 arg", lambda: (sh.printf("x\ny\n", _out=lambda line: lines.append(line)), lines)[1])
record("callback 3 args", lambda: (sh.printf("q\n", _out=lambda line, stdin, process: lines.append(process.pid > 0)),
                                   lines[2:])[1])
record("background", lambda: sh.sleep("0.1", _bg=True).wait().exit_code)
record("timeout", lambda: sh.sleep("5", _timeout=0.2))
record("not found", lambda: sh.Command("no-such-program-anywhere"))
with tempfile.TemporaryDirectory() as tmp:
    junk = os.path.join(tmp, "junk")
    with open(junk, "wb") as f:
        f.write(b"\x00not a program\n")
    os.chmod(junk, stat.S_IRWXU)
    record("exec fails", lambda: sh.Command(junk)())  # the child reports with traceback: ForkException
record("glob is sh's", lambda: __import__("glob").glob.__module__)

running = sh.sleep("0.3", _bg=True)  # started before anyone configured logging
import logging
stream = io.StringIO()
logging.basicConfig(level=logging.DEBUG, stream=stream, format="%(name)s %(levelname)s %(message)s")
running.wait()
sh.echo("logged")
records = stream.getvalue().splitlines()
record("loggers", lambda: sorted({" ".join(line.split()[:2]) for line in records}))
record("log messages", lambda: [m for m in ("process started", "started process", "process completed",
                                            "sleep 0.3") if any(m in line for line in records)])

import asyncio
async def main():
    out = await sh.echo("awaited", _async=True)
    chunks = [line async for line in sh.printf("c\nd\n", _iter=True, _async=True)]
    return out, chunks
record("async", lambda: asyncio.run(main()))
record("modules are real", lambda: [name for name in ("asyncio", "logging", "inspect", "traceback", "textwrap",
                                                      "platform", "importlib.metadata", "typing")
                                    if not hasattr(__import__(name, fromlist=["_"]), "__file__")])
print(json.dumps(seen, indent=1))
"""


def run(code, sh_from):
    proc = subprocess.run([sys.executable, "-c", code, LIB, *([str(sh_from)] if sh_from else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def check_lean_state(sh_from=None):
    state = json.loads(run(STATE, sh_from).stdout)
    assert state["loaded"] == [] and state["loaded_by_calls"] == [] and not state["typing"]
    assert state["holders"] == []  # only sh got stand-ins, no module it imported
    assert state["sh_holds"] == ["asyncio", "inspect", "logging", "metadata", "platform", "textwrap", "traceback"]
    assert state["status"] == 0 and state["lo"] and state["batch"] == 2
    # the real modules are there for anyone after sh
    assert state["ssl"] == "OpenSSL" and state["version"][0].isdigit()


def check_same_behaviour(sh_from=None):
    plain = run(PLAIN + BEHAVIOUR, sh_from)
    lean = run(LEAN + BEHAVIOUR, sh_from)
    assert plain.stderr == lean.stderr == ""  # sh logged nothing anywhere before logging was configured
    plain, lean = json.loads(plain.stdout), json.loads(lean.stdout)
    assert lean == plain
    # and the probe saw sh at work: a probe that noticed nothing would prove nothing
    assert plain["call"] == "hi\n" and plain["iter"] == ["a\n", "b\n"]
    assert plain["callback 1 arg"] == ["x\n", "y\n"] and plain["callback 3 args"] == [True]
    assert "ErrorReturnCode_N" in plain["exit code"] and "TimeoutException" in plain["timeout"]
    assert "ForkException" in plain["exec fails"] and "Exec format error" in plain["exec fails"]
    assert len(plain["log messages"]) == 4 and "sh.command.process DEBUG" in plain["loggers"]
    assert plain["async"] == ["awaited\n", ["c\n", "d\n"]]
    assert plain["modules are real"] == []


def check_version_fallback(sh_from=None):
    """The one difference: sh.__version__ is sh's own fallback for when it cannot read its metadata."""
    code = "import sh; from importlib import metadata; print(sh.__version__, metadata.version('sh'))"
    plain = run(PLAIN + code, sh_from).stdout.split()
    lean = run(LEAN + code, sh_from).stdout.split()
    assert plain[0] == plain[1] and re.match(r"\d", plain[0])
    assert lean == ["unknown", plain[1]]
    return plain[1]


def test_the_plugin_process_loads_none_of_the_stood_in_modules_and_still_runs_ip():
    check_lean_state()


def test_sh_behaves_for_other_code_as_when_imported_plainly():
    check_same_behaviour()


def test_the_one_difference_sh_version_is_its_own_fallback():
    check_version_fallback()
