"""cli.main without CNI_COMMAND in the environment (a person typed `route`): the usage, exit 2, nothing on
stdout; with CNI_COMMAND, even empty, a runtime's call answered in CNI terms."""
import json

from helpers import call, netconf

from cniroute import cli


def test_without_cni_command_a_person_gets_the_usage(monkeypatch, capsys, host):
    monkeypatch.delenv("CNI_COMMAND", raising=False)
    assert cli.main([], host=host) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: route") and host.calls == []


def test_an_empty_cni_command_is_still_a_runtimes_call(monkeypatch, host, tmp_path):
    code, out, _ = call(monkeypatch, host, "", netconf(tmp_path))
    assert code == 1 and out["code"] == 4 and out["msg"] == "missing CNI_COMMAND", json.dumps(out)
