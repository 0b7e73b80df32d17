"""A one-file build that cannot run itself (cut short by a failed copy, damaged on disk) still answers as a CNI
plugin: error JSON on stdout, code DamagedBuild.code, a msg and details that say so, no traceback."""
import json
import sys

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
