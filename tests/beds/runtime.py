"""Running a command for a test bed: argv lists only (never a shell), with the environment a container runtime or
the kubelet gives a plugin (in a namespace: netns.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence

# What a container runtime or the kubelet hands a plugin: a system PATH and the CNI_* variables. Plugins here
# are always started with an environment built from this, never from the test's own (tox puts its virtualenv
# first on PATH, and a plugin that inherited it would find packages that no node has).
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The DaemonSet's containers run with the image's own python3 (which has prometheus-client for the watcher's
# metrics), never the node's: their stand-in here is the python3 of the default PATH, whatever ROUTE_NODE_PYTHON
# says (tools/setup.sh installs prometheus-client for it).
IMAGE_PATH = NODE_PATH
# The node's python3 is the one NODE_PATH finds, unless ROUTE_NODE_PYTHON names another interpreter: CI runs the
# e2e suite again with the oldest and the newest python3 the plugin supports (tools/test.sh, tools/pythons.py).
NODE_PYTHON = os.environ.get("ROUTE_NODE_PYTHON")


def _node_python_dir(python: str) -> str:
    """A directory holding only `python3`, a link to *python*, to go first on the node's PATH (the interpreter's own
    bin/ may hold another python3, as /usr/bin does). Named after the interpreter, so sessions share it."""
    python = os.path.realpath(python)
    digest = hashlib.sha256(python.encode()).hexdigest()[:12]
    directory = os.path.join(tempfile.gettempdir(), f"route-node-python-{digest}")
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "python3")
    if not os.path.islink(link) or os.readlink(link) != python:
        temporary = f"{link}.{os.getpid()}"
        os.symlink(python, temporary)
        os.replace(temporary, link)
    return directory


if NODE_PYTHON:
    NODE_PATH = f"{_node_python_dir(NODE_PYTHON)}:{NODE_PATH}"


def runtime_env(**variables: str) -> dict[str, str]:
    """A plugin's whole environment, as a runtime builds it: NODE_PATH plus *variables*."""
    return {"PATH": NODE_PATH, **variables}


class SetupError(RuntimeError):
    """The test bed cannot be prepared (driver build, missing reference plugin, missing package)."""


class CommandError(RuntimeError):
    """A command run with check=True failed; carries the CompletedProcess."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        out = (proc.stdout or "").strip()
        err = (proc.stderr or "").strip()
        super().__init__(f"command {proc.args!r} failed with rc={proc.returncode}\nstdout: {out}\nstderr: {err}")


def run(argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    """subprocess.run in text mode with captured output (unless overridden)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    proc = subprocess.run(list(argv), **kw)
    if check and proc.returncode != 0:
        raise CommandError(proc)
    return proc
