"""A directory of the state dir that is a symlink (planted, or left by a careless hand) is never written through:
ADD, DEL and GC answer code 5 naming it, or do their work without it, and never 999; what it points to stays
as it was. The Store's own operations, and the verbs through the fake ip."""
import os

import pytest
from helpers import call, netconf, prev_result

from cniroute.errors import IOFailure
from cniroute.records import Attachment
from cniroute.store import Store


def planted_dirs(network):
    """Every directory of the state dir, with `network`'s."""
    return ["networks", f"networks/{network}", f"networks/{network}/attachments", "ips", "locks"]


PLANTED = planted_dirs("default")
RECORD = Attachment("c1", "eth0", "default", "eno1", "eno1.host", ["192.168.1.2/32"])


def snapshot(directory):
    return sorted((str(p.relative_to(directory)), p.read_bytes() if p.is_file() else None)
                  for p in directory.rglob("*"))


def plant(state_dir, planted, elsewhere):
    """Make state_dir/planted a symlink to `elsewhere`, which gets what was there (nothing, if nothing was)."""
    where = state_dir / planted
    if where.exists():
        os.rename(where, elsewhere)
    else:
        elsewhere.mkdir()
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(elsewhere, target_is_directory=True)


@pytest.mark.parametrize("planted", PLANTED)
def test_the_store_writes_nothing_through_a_symlinked_directory(tmp_path, planted):
    state_dir, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    plant(state_dir, planted, elsewhere)
    store = Store(str(state_dir))
    def lock():
        with store.shim_lock("eno1.host"), store.nft_lock():
            pass

    writes = {"save": lambda: store.save(RECORD), "claim": lambda: store.claim("192.168.1.2/32", RECORD.claimant),
              "lock": lock}
    for name, write in writes.items():
        try:
            write()
        except IOFailure as e:
            assert f"{state_dir}/{planted}: a symlink" in e.details, (name, e.msg, e.details)
    assert snapshot(elsewhere) == []


@pytest.mark.parametrize("planted", PLANTED)
def test_the_store_removes_nothing_through_a_symlinked_directory(tmp_path, planted):
    state_dir, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    store = Store(str(state_dir))
    store.save(RECORD)
    store.claim("192.168.1.2/32", RECORD.claimant)
    (state_dir / "ips" / "192.168.1.3.7.tmp").write_text("")
    with store.shim_lock("eno1.host"):
        pass
    plant(state_dir, planted, elsewhere)
    before = snapshot(elsewhere)
    for remove in (lambda: store.forget("default", RECORD.owner),
                   lambda: store.release("192.168.1.2/32", RECORD.claimant),
                   lambda: store.sweep_temporaries("default")):
        try:
            remove()
        except IOFailure as e:
            assert f"{state_dir}/{planted}: a symlink" in e.details, (e.msg, e.details)
    assert store.attachment("default", RECORD.owner) in (None, RECORD)
    assert snapshot(elsewhere) == before


# (verb, planted): the code; 0 where the verb can do its work without writing there.
EXPECTED = {("DEL", "ips"): 0}


@pytest.mark.parametrize("planted", PLANTED)
@pytest.mark.parametrize("verb", ["ADD", "DEL", "GC"])
def test_add_del_and_gc_answer_code_5_and_write_nothing_through_a_symlinked_directory(monkeypatch, host, tmp_path,
                                                                                        verb, planted):
    state_dir, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    if verb != "ADD":  # a pod attached before: its state is what the symlink now points to
        assert call(monkeypatch, host, "ADD", netconf(state_dir, prev_result("192.168.1.2/16")))[0] == 0
    plant(state_dir, planted, elsewhere)
    before = snapshot(elsewhere)
    conf = {"ADD": netconf(state_dir, prev_result("192.168.1.2/16")), "DEL": netconf(state_dir),
            "GC": netconf(state_dir, version="1.1.0", **{"cni.dev/valid-attachments": []})}[verb]
    code, out, err = call(monkeypatch, host, verb, conf)
    expected = EXPECTED.get((verb, planted), 5)
    assert code == (0 if expected == 0 else 1), (out, err)
    if expected:
        assert out["code"] == 5 and f"{state_dir}/{planted}: a symlink" in out["details"], out
    assert snapshot(elsewhere) == before
