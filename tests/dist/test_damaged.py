"""A one-file build that cannot run itself (cut short by a failed copy, damaged on disk, two downloads in one
file) still answers as a CNI plugin: error JSON on stdout, code DamagedBuild.code, a msg and details that say so,
no traceback. No byte of its start, damaged, makes a call report success without doing its work."""
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import build_dist  # noqa: E402

sys.path.insert(0, str(REPO / "lib"))
from cniroute.errors import DamagedBuild  # noqa: E402

CONFIG = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "route", "master": "eno1"})
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/nonexistent"}


def section_start(data):
    return data.index(build_dist.CODE_MARK)


def cut(at):
    return lambda data: data[:at(data)]


def flipped(at):
    def damage(data):
        i = at(data)
        return data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
    return damage


DAMAGES = {
    "cut in the code section": cut(lambda d: section_start(d) + 5000),
    "cut in the middle": cut(lambda d: len(d) // 2),
    "cut in the zip's directory": cut(lambda d: len(d) - 100),
    "a byte of the code section": flipped(lambda d: section_start(d) + 200_000),
    "the code section's recorded size": flipped(lambda d: section_start(d) + build_dist.SEAL_AT),
    "the zip's end record": flipped(lambda d: d.rindex(b"PK\x05\x06")),
    "a byte of a module in the zip": flipped(lambda d: d.index(b"jsonschema/validators.pyc") + 1000),
    "a byte of the launcher": flipped(lambda d: d.index(build_dist.BODY_START) + 100),
    "a download concatenated twice": lambda data: data + data,
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_copy_answers_in_cni_terms(dist_route, run_route, tmp_path, damage):
    copy = tmp_path / "route"
    copy.write_bytes(DAMAGES[damage](dist_route.read_bytes()))
    copy.chmod(0o755)
    proc = run_route(copy, stdin=CONFIG, **ADD_ENV)
    assert proc.returncode == 1, proc
    answer = json.loads(proc.stdout)
    assert answer["code"] == DamagedBuild.code and answer["cniVersion"] == "1.1.0", answer
    assert answer["msg"] == "the plugin file cannot run", answer
    assert f"{copy} is damaged or cut short" in answer["details"] and "install it again" in answer["details"]
    assert "Traceback" not in proc.stderr and "SyntaxError" not in proc.stderr, proc.stderr


def test_the_intact_file_runs(dist_route, run_route, tmp_path):
    copy = tmp_path / "route"
    copy.write_bytes(dist_route.read_bytes())
    copy.chmod(0o755)
    proc = run_route(copy, stdin='{"cniVersion": "1.0.0"}', CNI_COMMAND="VERSION")
    assert proc.returncode == 0 and "supportedVersions" in json.loads(proc.stdout), proc


# Every byte of the header (the shell line, the launcher) and of the start-up section (its layout and seal, then
# _route_boot's bytecode, which runs before the plugin's own code), damaged one at a time: XORed with one value,
# which changes along the file (1-255 in turn) so that every kind of damage meets every kind of byte somewhere.
# ~14,000 calls: each worker process runs its share on its own copy, damaged and restored in place.


def _xor(i):
    return 1 + i * 97 % 255


def _version_calls(args):
    """[(position, return code or what kept it from one, stdout, stderr)] of VERSION through `source` with each byte of
    `positions` damaged in turn."""
    source, positions, env = args
    work = os.path.join(os.path.dirname(source), f"worker-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    copy = os.path.join(work, "route")
    shutil.copyfile(source, copy)
    os.chmod(copy, 0o755)
    with open(source, "rb") as f:
        data = f.read()
    calls = []
    for i in positions:
        _poke(copy, i, data[i] ^ _xor(i))
        try:
            proc = subprocess.run([copy], input=b'{"cniVersion": "1.0.0"}', capture_output=True, env=env, timeout=30)
            calls.append((i, proc.returncode, proc.stdout, proc.stderr))
        except OSError as e:  # the shebang damaged: no program runs it
            calls.append((i, e, b"", b""))
        except subprocess.TimeoutExpired:
            calls.append((i, "no answer in 30 s", b"", b""))
        _poke(copy, i, data[i])
    return calls


def _poke(path, i, byte):
    fd = os.open(path, os.O_WRONLY)  # closed before the call: a file open for writing cannot be executed
    try:
        os.pwrite(fd, bytes([byte]), i)
    finally:
        os.close(fd)


def _damaged_calls(dist_route, bare_env, tmp_path, positions):
    source = tmp_path / "route"
    shutil.copyfile(dist_route, source)
    env = {**bare_env, "CNI_COMMAND": "VERSION"}
    workers = max(2, os.cpu_count() or 1)
    shares = [(str(source), positions[n::workers], env) for n in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        return [call for share in pool.map(_version_calls, shares) for call in share]


def _wrong(calls, intact, unparsed=range(0)):
    """The calls that answered neither as the intact file does nor code DamagedBuild.code; empty stdout with a
    failing status is right only for a position in `unparsed` (damage that python3 or the shell cannot parse or
    start: nothing of the file runs)."""
    wrong = []
    for i, status, stdout, stderr in calls:
        if status == 0 and stdout == intact:
            continue
        if isinstance(status, OSError) and i in unparsed:
            continue
        if isinstance(status, int) and status > 0:
            try:
                answer = json.loads(stdout)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("code") == DamagedBuild.code:
                continue
            if not stdout and i in unparsed:
                continue
        wrong.append((i, status, stdout[-300:], stderr[-300:]))
    return wrong


@pytest.fixture(scope="module")
def intact_answer(dist_route, run_route):
    proc = run_route(dist_route, stdin='{"cniVersion": "1.0.0"}', CNI_COMMAND="VERSION")
    assert proc.returncode == 0 and "supportedVersions" in json.loads(proc.stdout), proc
    return proc.stdout.encode()


def test_no_byte_of_the_header_damaged_reports_success(dist_route, bare_env, tmp_path, intact_answer):
    """Damage python3 can run past is answered 108: all of the launcher's body (compiled from a string: its
    syntax errors are caught), and what the body finds damaged; the rest of the header (the shell line, the
    wrapper) may only fail to start."""
    data = dist_route.read_bytes()
    header = range(data.index(build_dist.CODE_MARK))
    calls = _damaged_calls(dist_route, bare_env, tmp_path, header)
    body = range(data.index(build_dist.BODY_START) + 1, len(header))  # after the shell line's newline
    assert len(calls) == len(header)
    assert _wrong(calls, intact_answer, unparsed=[i for i in header if i not in body]) == []


def test_no_byte_of_the_start_up_section_damaged_reports_success(dist_route, bare_env, tmp_path, intact_answer):
    """The section's layout and seal, and _route_boot's bytecode: each damage is answered 108 (no SIGSEGV from
    bytecode run before the check)."""
    data = dist_route.read_bytes()
    start = data.index(build_dist.CODE_MARK)
    layout = start + len(build_dist.CODE_MARK)
    section = range(start, layout + 28 + int.from_bytes(data[layout + 16:layout + 20], "little"))
    calls = _damaged_calls(dist_route, bare_env, tmp_path, section)
    assert len(calls) == len(section)
    assert _wrong(calls, intact_answer) == []
