"""`route install` / `route uninstall` of the one-file build, into fake host roots (temp dirs)."""
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, sha256

sys.path.insert(0, str(REPO / "tools"))
import build_dist  # noqa: E402

CONFLIST = REPO / "deploy" / "net.d" / "10-macvlan-route.conflist"
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/nonexistent"}


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "host"
    (root / "opt" / "cni" / "bin").mkdir(parents=True)
    (root / "etc" / "cni" / "net.d").mkdir(parents=True)
    return root


def bin_dir(host):
    return host / "opt" / "cni" / "bin"


def conf_dir(host):
    return host / "etc" / "cni" / "net.d"


def variant(src, dst, tag):
    """Another valid build: the same files behind a padding entry, so every offset in the zip differs."""
    data = Path(src).read_bytes()
    with zipfile.ZipFile(src) as old, open(dst, "w+b") as f:
        f.write(data[:min(info.header_offset for info in old.infolist())])  # the header before the zip
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as new:
            new.writestr("0-padding-" + tag, os.urandom(50_000))
            for info in old.infolist():
                new.writestr(info, old.read(info))
        build_dist.seal(f)  # its size and its zip directory's checksum, which it checks at start
    os.chmod(dst, 0o755)
    return Path(dst)


def open_files(pid):
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            yield os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            pass


def test_install_copies_the_running_file_then_says_what_to_check(dist_route, host, run_route):
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host))
    assert proc.returncode == 0, proc.stderr
    target = bin_dir(host) / "route"
    assert target.read_bytes() == dist_route.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o755
    assert f"installed {target} (was: absent)" in proc.stdout
    assert "answers {" in proc.stdout and "CNI_COMMAND=VERSION" in proc.stdout and "next" in proc.stdout
    assert [p.name for p in bin_dir(host).iterdir()] == ["route"]  # no temp file left
    proc = run_route(target, stdin='{"cniVersion":"1.0.0"}', CNI_COMMAND="VERSION")
    assert proc.returncode == 0 and "supportedVersions" in proc.stdout


def test_install_is_idempotent(dist_route, host, run_route):
    assert run_route(dist_route, "install", "--bin-dir", bin_dir(host)).returncode == 0
    target = bin_dir(host) / "route"
    before = target.stat()
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host))
    assert proc.returncode == 0, proc.stderr
    assert f"unchanged: {target} already is this build" in proc.stdout
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_install_with_another_name(dist_route, host, run_route):
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--name", "route-v2")
    assert proc.returncode == 0, proc.stderr
    assert (bin_dir(host) / "route-v2").read_bytes() == dist_route.read_bytes()
    assert run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--name", "../x").returncode == 1


def test_replacing_the_file_while_the_old_one_runs(dist_route, host, tmp_path, bare_env):
    """The old build is mid-call (it has not imported jsonschema yet) when the new one is renamed over it."""
    old = variant(dist_route, tmp_path / "old-route", "old")
    target = bin_dir(host) / "route"
    assert subprocess.run([str(old), "install", "--bin-dir", str(bin_dir(host))], env=bare_env,
                          capture_output=True).returncode == 0
    assert sha256(target) == sha256(old)
    old_inode = target.stat().st_ino
    running = subprocess.Popen([str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**bare_env, **ADD_ENV})
    try:
        deadline = time.monotonic() + 30  # wait until it has started and holds the archive open
        while time.monotonic() < deadline:
            fds = set(open_files(running.pid))
            if str(target) in fds:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the old build never opened {target}: {fds}")
        time.sleep(0.3)  # now blocked reading stdin, after cli/config/plugin were imported
        proc = subprocess.run([str(dist_route), "install", "--bin-dir", str(bin_dir(host))], env=bare_env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "busy" not in (proc.stdout + proc.stderr).lower()
        assert f"installed {target} (was: route " in proc.stdout
        assert sha256(target) == sha256(dist_route) and target.stat().st_ino != old_inode
        # the old process now validates: an invalid config makes it import jsonschema, from its own file
        out, err = running.communicate(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "route",
                                                   "master": "eno1\n"}), timeout=60)
    finally:
        running.kill()
        running.wait()
    assert running.returncode == 1, err
    assert json.loads(out)["code"] == 7, (out, err)
    assert "Traceback" not in err and "busy" not in err.lower(), err


def test_a_file_that_is_not_a_route_build_is_replaced_only_with_force(dist_route, host, run_route):
    target = bin_dir(host) / "route"
    target.write_text("#!/bin/sh\necho another route\n")
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host))
    assert proc.returncode == 1
    assert "refused, nothing changed" in proc.stderr and "not a route build" in proc.stderr and "--force" in proc.stderr
    assert target.read_text() == "#!/bin/sh\necho another route\n"
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--force")
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == dist_route.read_bytes()


def test_a_symlink_is_replaced_only_with_force(dist_route, host, run_route):
    target = bin_dir(host) / "route"
    target.symlink_to(REPO / "bin" / "route")
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host))
    assert proc.returncode == 1 and "is a symlink" in proc.stderr
    assert target.is_symlink()
    assert run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--force").returncode == 0
    assert not target.is_symlink() and target.read_bytes() == dist_route.read_bytes()
    assert (REPO / "bin" / "route").read_text().startswith("#!/usr/bin/env python3")  # the link's target untouched


def test_a_missing_bin_dir_is_refused(dist_route, tmp_path, run_route):
    proc = run_route(dist_route, "install", "--bin-dir", tmp_path / "nowhere")
    assert proc.returncode == 1 and "not a directory" in proc.stderr
    assert not (tmp_path / "nowhere").exists()


def test_conflist_only_when_asked_and_never_clobbered_without_force(dist_route, host, run_route):
    assert run_route(dist_route, "install", "--bin-dir", bin_dir(host)).returncode == 0
    assert list(conf_dir(host).iterdir()) == []
    args = ["install", "--bin-dir", bin_dir(host), "--conf-dir", conf_dir(host), "--conflist", CONFLIST]
    proc = run_route(dist_route, *args)
    assert proc.returncode == 0, proc.stderr
    written = conf_dir(host) / CONFLIST.name
    assert written.read_bytes() == CONFLIST.read_bytes() and written.stat().st_mode & 0o777 == 0o644
    assert "unchanged" in run_route(dist_route, *args).stdout
    written.write_text('{"cniVersion": "1.0.0", "name": "mine", "plugins": []}')
    old = variant(dist_route, host / "old-route", "old")
    (bin_dir(host) / "route").write_bytes(old.read_bytes())
    proc = run_route(dist_route, *args)
    assert proc.returncode == 1 and "refused, nothing changed" in proc.stderr and "--force" in proc.stderr
    assert '"mine"' in written.read_text()
    assert sha256(bin_dir(host) / "route") == sha256(old)  # a refusal changes nothing, the bin file neither
    proc = run_route(dist_route, *args, "--force")
    assert proc.returncode == 0, proc.stderr
    assert written.read_bytes() == CONFLIST.read_bytes()
    assert sha256(bin_dir(host) / "route") == sha256(dist_route)


def test_a_conflist_whose_route_entry_is_invalid_is_refused(dist_route, host, tmp_path, run_route):
    bad = tmp_path / "20-bad.conflist"
    conf = json.loads(CONFLIST.read_text())
    conf["plugins"][1]["master"] = "eno1\n"
    bad.write_text(json.dumps(conf))
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--conf-dir", conf_dir(host), "--conflist", bad)
    assert proc.returncode == 1 and "invalid master" in proc.stderr, proc.stderr
    assert list(conf_dir(host).iterdir()) == [] and list(bin_dir(host).iterdir()) == []
    proc = run_route(dist_route, "install", "--bin-dir", bin_dir(host), "--conf-dir", conf_dir(host))
    assert proc.returncode == 1 and "go together" in proc.stderr


def test_uninstall_removes_only_what_install_put_there(dist_route, host, tmp_path, run_route):
    args = ["--bin-dir", bin_dir(host), "--conf-dir", conf_dir(host), "--conflist", CONFLIST]
    assert run_route(dist_route, "install", *args).returncode == 0
    (bin_dir(host) / "macvlan").write_text("not ours")
    proc = run_route(dist_route, "uninstall", *args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in bin_dir(host).iterdir()) == ["macvlan"]
    assert list(conf_dir(host).iterdir()) == []
    assert "removed" in proc.stdout
    proc = run_route(dist_route, "uninstall", *args)
    assert proc.returncode == 0 and "nothing to remove" in proc.stdout
    # another build there, or an edited conflist: kept, and it says why
    old = variant(dist_route, tmp_path / "old-route", "old")
    (bin_dir(host) / "route").write_bytes(old.read_bytes())
    proc = run_route(dist_route, "uninstall", "--bin-dir", bin_dir(host))
    assert proc.returncode == 1 and "not removing" in proc.stderr and "is not this build" in proc.stderr
    assert (bin_dir(host) / "route").exists()
    (bin_dir(host) / "route").unlink()
    edited = conf_dir(host) / CONFLIST.name
    edited.write_text(CONFLIST.read_text().replace("eno1", "eno2"))
    proc = run_route(dist_route, "uninstall", *args)
    assert proc.returncode == 1 and "not removing" in proc.stderr
    assert edited.exists()


def test_the_source_tree_launcher_refuses_to_install(host, bare_env):
    env = dict(bare_env, PATH=os.environ["PATH"])  # bin/route needs jsonschema & sh from this python
    proc = subprocess.run([str(REPO / "bin" / "route"), "install", "--bin-dir", str(bin_dir(host))], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "source tree" in proc.stderr and "python3 tools/build_dist.py" in proc.stderr and "dist/route" in proc.stderr
    assert list(bin_dir(host).iterdir()) == []
