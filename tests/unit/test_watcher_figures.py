"""The watcher's figures (figures.py), what a pass counts into them (reconcile.Tally), their Prometheus exposition
(metrics.py) and `route status` with its probes (status.py), against the fake ip. Real namespaces, the manifest's
own commands: tests/e2e/test_watcher_health.py."""
import json

import pytest
from helpers import POD_NETNS, call, netconf, prev_result, run_person
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cniroute import figures, metrics, reconcile

SHIM = "eno1.host"


def add(monkeypatch, host, state_dir, container, *addresses):
    code, out, err = call(monkeypatch, host, "ADD", netconf(state_dir, prev_result(*addresses)),
                          CNI_CONTAINERID=container)
    assert code == 0, (out, err)


def tally(host, state_dir):
    [outcome] = reconcile.run_pass(host, str(state_dir))
    return outcome.tally


def test_a_pass_counts_its_repairs_by_kind_and_the_attachments_by_network(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    add(monkeypatch, host, tmp_path, "b", "192.168.1.3/16")
    assert tally(host, tmp_path).repairs == {}
    host.delete_link(SHIM)
    counted = tally(host, tmp_path)
    # the link, its three sysctls and up; the master's two addresses copied; a route per pod
    assert counted.repairs == {"shim": 5, "address_copy": 2, "node_route": 2}, counted.repairs
    assert counted.attachments == {"default": 2} and counted.errors == {}


def test_errors_are_counted_by_cni_code(monkeypatch, host, tmp_path):
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.delete_link("eno1")
    assert tally(host, tmp_path).errors == {104: 1}


def test_pods_that_cannot_be_entered_are_counted_by_why(monkeypatch, host, tmp_path):
    host.pod(POD_NETNS, addresses=["192.168.1.2/16"])
    add(monkeypatch, host, tmp_path, "c1", "192.168.1.2/16")
    assert tally(host, tmp_path).not_entered == {}
    host.pods[POD_NETNS].links["eth0"]["addresses"] = ["192.168.1.9/16"]  # the pod took ours off: left alone
    assert tally(host, tmp_path).not_entered == {}
    host.namespaces.discard(POD_NETNS)
    assert tally(host, tmp_path).not_entered == {"cannot_enter": 1}
    host.on_path.discard("nsenter")
    host.namespaces.add(POD_NETNS)
    assert tally(host, tmp_path).not_entered == {"no_nsenter": 1}


def written(monkeypatch, host, tmp_path, broken=False):
    """The figures a watcher leaves after one pass over one pod's node (with its master gone if `broken`)."""
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    host.delete_link("eno1" if broken else SHIM)
    said = []
    counted = figures.Figures(str(tmp_path), 60.0, said.append)
    counted.pass_started((4242, None, 0))
    outcomes = reconcile.run_pass(host, str(tmp_path))
    counted.pass_ended((4242, None, 0), outcomes, 0.07, 60.0)
    assert said == []
    return counted


def test_the_figures_are_written_to_the_state_dir_after_a_pass(monkeypatch, host, tmp_path):
    written(monkeypatch, host, tmp_path)
    doc = figures.read(tmp_path)
    assert doc["passes"] == {"in_shape": 1} and doc["repairs"]["node_route"] == 1
    assert doc["pass_seconds"]["buckets"][1] == 1  # 0.07 s: in (0.05, 0.1]
    assert doc["last_pass"]["result"] == "in_shape" and doc["loop"]["state"] == "idle"
    assert doc["monitor"] == {"pid": 4242, "down_since": None, "restarts": 0}


def test_a_dry_run_writes_no_figures(tmp_path):
    counted = figures.Figures(str(tmp_path / "state"), 60.0, print, write=False)
    counted.pass_started((1, None, 0))
    assert not (tmp_path / "state").exists()


def test_a_figures_file_that_cannot_be_written_is_said_once(tmp_path):
    (tmp_path / figures.STATUS_FILE).mkdir()  # in the way
    said = []
    counted = figures.Figures(str(tmp_path), 60.0, said.append)
    counted.pass_started((1, None, 0))
    counted.pass_ended((1, None, 0), [], 0.01, 60.0)
    assert len(said) == 1 and figures.STATUS_FILE in said[0], said


def test_liveness_fails_on_a_long_pass_a_missed_pass_and_a_monitor_left_dead(tmp_path):
    counted = figures.Figures(str(tmp_path), 60.0, print, write=False)
    counted.pass_started((1, None, 0))
    since = counted.snapshot()["loop"]["since"]
    assert figures.liveness(counted.snapshot(), 120, now=since + 100) is None
    assert figures.liveness(counted.snapshot(), 120, now=since + 130) == "a pass has run for 130 s"
    counted.pass_ended((1, None, 0), [], 1.0, 60.0)
    doc = counted.snapshot()
    assert figures.liveness(doc, 120, now=doc["loop"]["next_by"] + 100) is None  # idle: nothing to do is healthy
    assert figures.liveness(doc, 120, now=doc["loop"]["next_by"] + 121) == "its next pass was due 121 s ago"
    counted.pass_started((None, 30.0, 2))  # the monitor ended 30 s ago and is not running
    doc = counted.snapshot()
    assert figures.liveness(doc, 120, now=doc["loop"]["since"] + 1) is None
    assert figures.liveness(doc, 20, now=doc["loop"]["since"] + 1).startswith("ip monitor has not run for 3")


def test_route_status_shows_the_figures_in_text_and_json(monkeypatch, host, tmp_path):
    written(monkeypatch, host, tmp_path, broken=True)
    code, out, err = run_person(host, "status", "--state-dir", tmp_path)
    assert code == 0, err
    assert "passes: 1 (in_shape 0, not_in_shape 1, failed 0)" in out, out
    assert "  not in shape: eno1.host: master eno1 does not exist" in out and "errors by CNI code: 104 1" in out, out
    assert "attachments at the last pass: default 1" in out and "live: idle for" in out, out
    code, out, _ = run_person(host, "status", "--json", "--state-dir", tmp_path)
    doc = json.loads(out)
    assert code == 0 and doc["live"] and doc["stalled"] is None and doc["errors"] == {"104": 1}, doc
    code, out, _ = run_person(host, "status", "--live", "--state-dir", tmp_path)
    assert code == 0 and out.startswith("live: idle for "), out


def test_route_status_without_a_watcher_says_so(host, tmp_path):
    for probe in ((), ("--live",)):
        code, _, err = run_person(host, "status", *probe, "--state-dir", tmp_path)
        assert code == 1 and "no watcher's figures under" in err, err


def test_the_readiness_probe_answers_as_status_for_the_recorded_shims(monkeypatch, host, tmp_path):
    code, out, _ = run_person(host, "status", "--ready", "--state-dir", tmp_path)
    assert code == 0 and out == f"ready: no attachment recorded under {tmp_path} yet\n", out
    add(monkeypatch, host, tmp_path, "a", "192.168.1.2/16")
    assert run_person(host, "status", "--ready", "--state-dir", tmp_path)[:2] == (0, "ready: 1 shim can take pods\n")
    host.links["eno1"]["up"] = False
    code, out, _ = run_person(host, "status", "--ready", "--state-dir", tmp_path)
    assert code == 1 and out == "not ready: default on eno1.host: master eno1 is down\n", out
    status = call(monkeypatch, host, "STATUS", netconf(tmp_path, version="1.1.0"))
    assert status[1]["msg"] == "master eno1 is down"  # the same answer


def test_the_metrics_are_the_figures_in_prometheus_text_format(monkeypatch, host, tmp_path):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Collector(written(monkeypatch, host, tmp_path)))
    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("route_cni_reconcile_passes_total", (("result", "in_shape"),))] == 1
    assert samples[("route_cni_reconcile_passes_total", (("result", "failed"),))] == 0
    assert samples[("route_cni_reconcile_repairs_total", (("kind", "node_route"),))] == 1
    assert samples[("route_cni_reconcile_repairs_total", (("kind", "pod_side"),))] == 0
    assert samples[("route_cni_reconcile_pass_duration_seconds_bucket", (("le", "0.05"),))] == 0
    assert samples[("route_cni_reconcile_pass_duration_seconds_bucket", (("le", "0.1"),))] == 1
    assert samples[("route_cni_reconcile_pass_duration_seconds_count", ())] == 1
    assert samples[("route_cni_attachments", (("network", "default"),))] == 1
    assert samples[("route_cni_watcher_monitor_up", ())] == 1
    assert ("route_cni_reconcile_last_pass_timestamp_seconds", ()) in samples
    assert "# TYPE route_cni_reconcile_pass_duration_seconds histogram" in text


@pytest.mark.parametrize("address, parsed", [("127.0.0.1:10290", ("127.0.0.1", 10290)), (":9", ("0.0.0.0", 9)),
                                             ("[::]:10290", ("::", 10290)), ("[fd00::5]:1", ("fd00::5", 1))])
def test_the_metrics_address_is_host_and_port(address, parsed):
    assert metrics.parse_address(address) == parsed


@pytest.mark.parametrize("address", ["10290", "localhost:10290", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:x"])
def test_a_metrics_address_that_is_not_one_is_refused(address):
    with pytest.raises(ValueError):
        metrics.parse_address(address)
