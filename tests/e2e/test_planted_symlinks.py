"""A directory of the state dir that is a symlink to another directory, through the plugin a node runs: ADD,
DEL and GC never write or remove anything through it, and answer code 5 naming it (DEL without ips/ still does
its work: it reads no claim through the symlink and writes none), never 999."""
import os
import shutil

import pytest
from test_faults import call, config, our_routes, state_files
from test_state_symlinks import plant, planted_dirs, snapshot

PLANTED = planted_dirs("rtt-faults")  # test_faults.config's network
IP = "192.168.2.9"


def unplant(state_dir, planted, elsewhere):
    (state_dir / planted).unlink()
    os.rename(elsewhere, state_dir / planted)


def refused(result, state_dir, planted):
    code, out, err = result
    assert code != 0 and out and out["code"] == 5, (code, out, err)
    assert f"{state_dir}/{planted}: a symlink" in out["details"], out


@pytest.mark.parametrize("planted", PLANTED)
def test_add_del_and_gc_write_nothing_through_a_symlinked_state_directory(topo, route_plugin, tmp_path, planted):
    state_dir, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    add, gc = config(tmp_path, prev=[f"{IP}/16"]), config(tmp_path, **{"cni.dev/valid-attachments": []})

    plant(state_dir, planted, elsewhere)
    refused(call(topo, route_plugin, "ADD", add), state_dir, planted)
    assert snapshot(elsewhere) == [] and our_routes(topo) == []
    shutil.rmtree(state_dir)
    elsewhere.rmdir()

    assert call(topo, route_plugin, "ADD", add)[0] == 0
    plant(state_dir, planted, elsewhere)
    before = snapshot(elsewhere)
    result = call(topo, route_plugin, "DEL", config(tmp_path))
    if planted == "ips":
        assert result[0] == 0, result
    else:
        refused(result, state_dir, planted)
    assert snapshot(elsewhere) == before
    unplant(state_dir, planted, elsewhere)
    assert call(topo, route_plugin, "DEL", config(tmp_path))[0] == 0

    assert call(topo, route_plugin, "ADD", add)[0] == 0
    plant(state_dir, planted, elsewhere)
    before = snapshot(elsewhere)
    refused(call(topo, route_plugin, "GC", gc), state_dir, planted)
    assert snapshot(elsewhere) == before
    unplant(state_dir, planted, elsewhere)
    assert call(topo, route_plugin, "GC", gc)[0] == 0
    assert our_routes(topo) == [] and state_files(tmp_path) == []
