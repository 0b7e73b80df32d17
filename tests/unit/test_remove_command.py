"""`route remove` against the fake ip: it refuses while pods run, a dry run changes nothing, and a removal takes
away what ADD put there (pod routes, host routes, the shim it made, the nft table, the state dir), and only that."""
import os
from pathlib import Path

from helpers import POD_NETNS, call, netconf, prev_result, run_person

from cniroute import install

SHIM = "eno1.host"
VIA = ["10.96.0.0/12"]


def add(monkeypatch, host, state_dir, container="c1", address="192.168.1.2/16", **keys):
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result(address), **keys),
                          CNI_CONTAINERID=container)
    assert code == 0, (out, err)


def remove(host, state_dir, *options):
    return run_person(host, "remove", "--state-dir", state_dir, *options)


def node_as_is(host, pod):
    return (repr(host.links), repr(host.routes), repr(host.nft), repr(pod.routes), repr(pod.rules))


def test_refused_while_a_pod_runs_and_nothing_changes(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path, routeViaHost=VIA)
    before, files = node_as_is(host, pod), sorted(tmp_path.rglob("*"))
    changes = len(host.changes())
    code, out, _ = remove(host, tmp_path)
    assert code == 1 and "refused, nothing changed" in out and f"default/c1@eth0 in {POD_NETNS}" in out, out
    assert "--force" in out
    assert node_as_is(host, pod) == before and sorted(tmp_path.rglob("*")) == files
    assert host.changes()[changes:] == []


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path, routeViaHost=VIA)
    before, files = node_as_is(host, pod), sorted(tmp_path.rglob("*"))
    changes = len(host.changes())
    code, out, err = remove(host, tmp_path, "--force", "--dry-run")
    assert code == 0, (out, err)
    assert node_as_is(host, pod) == before and sorted(tmp_path.rglob("*")) == files
    assert host.changes()[changes:] == []
    assert f"would remove the routes and rules of default/c1@eth0 inside its pod {POD_NETNS}" in out
    assert f"{SHIM}: would remove 1 route and the shim" in out
    assert "would remove the nft table inet cni_route" in out
    assert f"would remove the state dir {tmp_path}" in out
    assert f"dry-run, not run: ip link del dev {SHIM}" in err  # the exact commands, in the log block


def test_force_takes_away_everything_add_put_there(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path, routeViaHost=VIA)
    assert pod.routes and host.nft and SHIM in host.links
    code, out, err = remove(host, tmp_path, "--force")
    assert code == 0, (out, err)
    assert SHIM not in host.links and host.routes_on(SHIM) == []
    assert host.nft is None
    assert [r for r in pod.routes if r["protocol"] == "201"] == []
    assert not tmp_path.exists()


def test_stale_records_need_no_force_and_a_shim_without_pods_goes_too(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path / "state", "gone", "192.168.1.3/16")
    add(monkeypatch, host, tmp_path / "state", "deleted", "192.168.1.4/16", bridge="eno1.other")
    assert call(monkeypatch, host, "DEL", netconf(tmp_path / "state", bridge="eno1.other"),
                CNI_CONTAINERID="deleted")[0] == 0
    host.namespaces.discard(POD_NETNS)  # the pod of "gone" went without its DEL
    code, out, err = remove(host, tmp_path / "state")
    assert code == 0, (out, err)
    assert SHIM not in host.links and "eno1.other" not in host.links  # known from its lock alone
    assert host.routes_on(SHIM) == [] and not (tmp_path / "state").exists()


def test_a_device_route_did_not_make_stays_without_our_routes(monkeypatch, host, pod, tmp_path):
    host.add_link(SHIM, kind="macvlan", parent="eno1", mode="bridge", mac="02:aa:bb:cc:dd:ee")  # made by someone
    add(monkeypatch, host, tmp_path)
    host.add_route("192.168.9.9/32", SHIM, protocol="static")
    host.namespaces.discard(POD_NETNS)
    code, out, _ = remove(host, tmp_path)
    assert code == 0, out
    assert host.routes_on(SHIM) == ["192.168.9.9/32"]  # theirs
    assert "the device stays: route did not make it" in out


def test_something_else_in_the_state_dir_stays_with_the_dir(monkeypatch, host, pod, tmp_path):
    add(monkeypatch, host, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    host.namespaces.discard(POD_NETNS)
    code, out, _ = remove(host, tmp_path)
    assert code == 0 and sorted(os.listdir(tmp_path)) == ["notes.txt"], out


def test_the_plugin_file_stays_while_running_pods_need_it_and_only_a_route_build_goes(monkeypatch, host, pod,
                                                                                       tmp_path):
    add(monkeypatch, host, tmp_path / "state")
    plugin = tmp_path / "route"
    plugin.write_bytes(b"a route build")
    monkeypatch.setattr(install, "describe", lambda path: (Path(path).read_bytes() == b"a route build", "?"))
    code, out, _ = remove(host, tmp_path / "state", "--force", "--plugin", plugin)
    assert code == 0 and plugin.exists() and "keeping" in out, out
    other = tmp_path / "other"
    other.write_bytes(b"not route")
    code, out, _ = remove(host, tmp_path / "state", "--plugin", other)
    assert code == 1 and other.exists() and "not a route build" in out, out
    code, out, _ = remove(host, tmp_path / "state", "--plugin", plugin)
    assert code == 0 and not plugin.exists(), out
