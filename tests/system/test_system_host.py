"""SystemHost.execute, the one way host commands run: through sh, with memory files for the command's stdin,
stdout and stderr (no pipes, so sh starts no thread to feed or drain them), and its own timeout; and how it
tells which network namespace a path is (identify_namespace), on real namespaces."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from beds import netns

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))
from cniroute.errors import CommandFailed, CommandTimeout  # noqa: E402
from cniroute.host import SystemHost, _cookie, _cookie_from_inside  # noqa: E402


@pytest.fixture(scope="module")
def host():
    return SystemHost()


def test_the_command_reads_and_writes_memory_files(host):
    status, out, err = host.execute(["sh", "-c", "readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2"],
                                    None, 10)
    assert status == 0 and err == ""
    assert [line.split(" ")[0] for line in out.splitlines()] == ["/memfd:stdin", "/memfd:stdout", "/memfd:stderr"]


def test_input_output_and_status_arrive_whole(host):
    big = "".join(f"line {i}\n" for i in range(50_000))  # more than a pipe holds
    status, out, err = host.execute(["sh", "-c", "cat; echo done >&2; exit 3"], big, 10)
    assert (status, out, err) == (3, big, "done\n")


def test_no_thread_feeds_the_input(host, monkeypatch):
    started = []
    real = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self.name) or real(self))
    assert host.execute(["cat"], "given\n", 10)[1] == "given\n"
    assert not [name for name in started if name.startswith("STDIN")], started


def test_the_timeout_kills_the_command(host):
    began = time.monotonic()
    with pytest.raises(CommandTimeout):
        host.execute(["sleep", "30"], None, 0.3)
    assert time.monotonic() - began < 10


def test_a_program_not_on_path_is_said_so_both_when_run_and_when_followed(host):
    for start in (lambda: host.execute(["no-such-program-anywhere"], None, 10),
                  lambda: host.follow(["no-such-program-anywhere"], print, print)):
        with pytest.raises(CommandFailed) as raised:
            start()
        assert (raised.value.msg, raised.value.details) == ("no-such-program-anywhere not found on PATH",
                                                            "install the package that provides it")


@pytest.fixture
def netns_path():
    """A network namespace at /run/netns/NAME (ip netns), deleted at the end; remake() makes it again there."""
    name = f"rtt-sysid-{os.getpid()}"
    ip_netns("add", name)
    yield f"/run/netns/{name}"
    ip_netns("del", name, check=False)


def ip_netns(*args, check=True):
    subprocess.run(["ip", "netns", *args], check=check, capture_output=True)


def test_a_namespace_made_again_at_the_path_with_the_freed_inode_has_another_cookie(host, netns_path):
    cookie, legacy = host.identify_namespace(netns_path), host.identify_namespace(netns_path, like="1:2")
    assert cookie.startswith("cookie:") and legacy == "{0.st_dev}:{0.st_ino}".format(os.stat(netns_path))
    netns.remake_at_the_same_inode(os.path.basename(netns_path))
    assert host.identify_namespace(netns_path, like=legacy) == legacy  # the old form cannot tell them apart
    assert host.identify_namespace(netns_path) != cookie


def test_a_kernel_without_ns_get_id_gets_the_same_cookie_from_a_socket_made_inside(netns_path):
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        assert _cookie_from_inside(fd) == _cookie(fd)
        assert _cookie_from_inside(fd) != _cookie(os.open("/proc/self/ns/net", os.O_RDONLY))
    finally:
        os.close(fd)


def test_what_is_no_network_namespace_says_why(host, tmp_path):
    (tmp_path / "file").write_text("")
    for path, reason in ((tmp_path / "file", "not a network namespace"), (tmp_path / "gone", "No such file"),
                         ("/proc/self/ns/uts", "not a network namespace")):
        with pytest.raises(OSError, match=reason):
            host.identify_namespace(str(path))
        assert host.namespace_id(str(path)) is None and not host.is_network_namespace(str(path))


def test_a_limit_bounds_what_the_command_can_write_and_it_still_ends(host):
    """A read of something huge (a pod's table filled by the pod) costs no more memory than the limit."""
    status, out, err = host.execute(["sh", "-c", "head -c 10000000 /dev/zero | tr '\\0' x; echo end >&2"], None, 10,
                                    limit=4096)
    assert len(out) == 4096 and err.endswith("end\n"), err  # (tr says its write failed: File too large)
    assert host.execute(["sh", "-c", "echo small"], None, 10, limit=4096)[1] == "small\n"
