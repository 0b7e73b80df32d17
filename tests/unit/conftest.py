"""Unit tests run no process: any attempt to start one fails the test (the fake ip answers instead)."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from helpers import POD_NETNS  # noqa: E402

from fakeip import FakeHost  # noqa: E402


def _forbidden(*args, **kwargs):
    raise AssertionError(f"a unit test tried to start a process: {args[:1]}")


@pytest.fixture(autouse=True)
def no_subprocesses(monkeypatch):
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _forbidden)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _forbidden)


@pytest.fixture
def host():
    """A node with eno1 (192.168.0.5/16, fd00::5/64) and an IPv4 default route through it."""
    h = FakeHost()
    h.add_link("eno1", kind=None, addresses=["192.168.0.5/16", "fd00::5/64"])
    h.add_route("default", "eno1", protocol="static", scope="global")
    return h


@pytest.fixture
def pod(host):
    """The pod's namespace (CNI_NETNS of helpers.call) with eth0 192.168.1.2/16."""
    return host.pod(POD_NETNS, addresses=["192.168.1.2/16"])
