"""The lean import of sh (runner._import_sh_lean) in a fresh interpreter: sh works, and nothing is left out
for the rest of the process. Needs processes, so it is not a unit test (those may start none)."""
import os
import subprocess
import sys

LIB = os.path.join(os.path.dirname(__file__), "..", "..", "lib")
PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from cniroute.runner import SystemHost
host = SystemHost()
assert "ssl" not in sys.modules and "importlib.metadata" not in sys.modules, "lean import skipped nothing"
import asyncio.base_events
assert asyncio.base_events.ssl is None  # asyncio took its no-ssl path
status, out, err = host.execute(["ip", "-json", "link", "show", "lo"], None, 10)
assert status == 0 and '"ifname":"lo"' in out, (status, out, err)
import ssl  # the real modules are there for anyone after sh
from importlib import metadata
print(ssl.OPENSSL_VERSION.split()[0], metadata.version("sh"))
"""


def test_sh_imported_lean_still_runs_commands_and_hides_nothing_afterwards():
    proc = subprocess.run([sys.executable, "-c", PROBE, LIB], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    name, version = proc.stdout.split()
    assert name == "OpenSSL" and version[0].isdigit()
