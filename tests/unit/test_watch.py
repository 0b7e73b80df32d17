"""`route reconcile --watch`'s own logic (watch.py) against the fake ip and a fake `ip monitor`: when passes run,
what is reported, how the monitor is restarted, and that weeks of it stay bounded (threads, descriptors,
memory, what it remembers). Real namespaces: tests/e2e/test_self_healing.py."""
import contextlib
import gc
import io
import os
import threading
import time
import tracemalloc

import pytest
from helpers import call, netconf, prev_result

from cniroute import figures, reconcile, watch
from cniroute.errors import CommandFailed

SHIM = "eno1.host"


class Monitor:
    """A fake `ip monitor`: the test prints its lines and ends it."""

    def __init__(self, on_line, on_end):
        self.on_line, self.on_end, self.pid, self.stopped = on_line, on_end, 4242, False

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.on_end("signal 15", "")


class Bed:
    """A watcher's loop (reconcile.Watching over watch.Watcher) in a thread of its own (its signal handling is the
    main thread's, not tested here)."""

    def __init__(self, host, state_dir, interval=3600.0):
        self.host, self.monitors, self.fail_starts = host, [], 0
        host.follow = self._follow
        self.watcher = watch.Watcher(host, interval, reconcile.say)
        counted = figures.Figures(str(state_dir), interval, reconcile.say)
        self.watching = reconcile.Watching(host, self.watcher, "-", counted, state_dir=str(state_dir), dry_run=False,
                                           ip_timeout=10.0)
        self.err = io.StringIO()
        self.passes = 0
        self._pass = self.watching.one_pass

        def counted():
            self._pass()
            self.passes += 1

        self.watching.one_pass = counted

    def _follow(self, argv, on_line, on_end):
        assert argv == ["ip", *watch.MONITOR]
        if self.fail_starts:
            self.fail_starts -= 1
            raise CommandFailed("ip not found on PATH", "install the package that provides it")
        self.monitors.append(Monitor(on_line, on_end))
        return self.monitors[-1]

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.until(lambda: self.passes >= 1)
        return self

    def _run(self):
        with contextlib.redirect_stderr(self.err):
            self.watching.run()

    def __exit__(self, *exc):
        self.watcher.stop()
        self.thread.join(10.0)
        assert not self.thread.is_alive()
        self.watcher.close()

    def event(self):
        self.monitors[-1].on_line("3: eno1.host: <BROADCAST> mtu 1500 ...\n")

    def until(self, condition, seconds=10.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.005)
        return condition()

    def quiet(self):
        """Wait until the loop has handled what it was told (no pass for a while)."""
        count = -1
        while count != self.passes:
            count = self.passes
            time.sleep(watch.BURST + 0.1)


@pytest.fixture
def attached(monkeypatch, host, tmp_path):
    code, out, err = call(monkeypatch, host, "ADD", netconf(tmp_path, prev_result("192.168.1.2/16")))
    assert code == 0, (out, err)
    return tmp_path


def test_an_event_brings_a_pass_that_repairs(host, attached):
    with Bed(host, attached) as bed:
        assert "watching" in bed.err.getvalue() and "pid 4242" in bed.err.getvalue()
        host.delete_link(SHIM)
        bed.event()
        assert bed.until(lambda: SHIM in host.links and host.routes_on(SHIM) == ["192.168.1.2/32"])
        assert bed.until(lambda: f"{SHIM}: repaired" in bed.err.getvalue())


def test_the_loop_leaves_its_figures_and_heartbeat_after_each_pass(host, attached):
    with Bed(host, attached) as bed:
        host.delete_link(SHIM)
        bed.event()
        assert bed.until(lambda: figures.read(attached)["repairs"].get("shim", 0) > 0)
        bed.quiet()
        doc = figures.read(attached)
        assert sum(doc["passes"].values()) == bed.passes and doc["loop"]["state"] == "idle"
        assert doc["monitor"]["pid"] == 4242 and figures.liveness(doc, 1.0) is None


def test_a_restarted_monitor_is_counted(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.05)
    with Bed(host, attached) as bed:
        bed.monitors[-1].on_end(1, "")
        assert bed.until(lambda: len(bed.monitors) == 2)
        assert bed.until(lambda: figures.read(attached)["monitor"]["restarts"] == 1)


def test_a_monitor_that_cannot_start_is_down_in_the_figures(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.05)
    bed = Bed(host, attached, interval=0.1)
    bed.fail_starts = 1000
    with bed:
        assert bed.until(lambda: bed.passes >= 3)
        doc = figures.read(attached)
        assert doc["monitor"]["pid"] is None and doc["monitor"]["down_since"] is not None
        doc["loop"] = {"state": "idle", "since": 0.0, "next_by": figures.clock() + 100}  # only the monitor is late
        assert figures.liveness(doc, 0.0).startswith("ip monitor has not run for ")
        bed.fail_starts = 0
        assert bed.until(lambda: figures.read(attached)["monitor"]["down_since"] is None)


def test_a_burst_of_events_costs_one_pass(host, attached):
    with Bed(host, attached) as bed:
        bed.quiet()
        before = bed.passes
        for _ in range(20):
            bed.event()
        bed.quiet()
        assert bed.passes == before + 1


def test_without_events_only_the_interval_brings_passes(host, attached):
    with Bed(host, attached, interval=0.2) as bed:
        assert bed.until(lambda: bed.passes >= 3)
    with Bed(host, attached) as bed:  # an hour: nothing but the first pass
        time.sleep(0.5)
        assert bed.passes == 1


def test_the_same_trouble_is_reported_once_and_a_change_again(host, attached):
    host.delete_link("eno1")
    with Bed(host, attached, interval=0.1) as bed:
        assert bed.until(lambda: bed.passes >= 5)
        assert bed.err.getvalue().count("master eno1 does not exist") == 2  # its log block and its line
        host.add_link("eno1", addresses=["192.168.0.5/16"])
        assert bed.until(lambda: f"{SHIM}: repaired" in bed.err.getvalue())


def test_a_monitor_that_ends_is_started_again_with_a_full_pass(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.05)
    with Bed(host, attached) as bed:
        passes = bed.passes
        host.delete_link(SHIM)  # unseen: no event
        bed.monitors[-1].on_end(1, "Dump terminated\n")
        assert bed.until(lambda: len(bed.monitors) == 2)
        assert bed.until(lambda: bed.passes > passes and SHIM in host.links)
        assert "ip monitor ended (exit 1: Dump terminated); starting it again" in bed.err.getvalue()


def test_a_late_end_of_a_replaced_monitor_is_not_the_current_ones(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.05)
    with Bed(host, attached) as bed:
        first = bed.monitors[-1]
        first.on_end(1, "")
        assert bed.until(lambda: len(bed.monitors) == 2)
        first.on_end(1, "again")  # its waiting thread, late
        time.sleep(0.3)
        assert len(bed.monitors) == 2 and bed.watcher.monitor is not None


def test_a_monitor_that_cannot_start_is_retried_and_passes_go_on(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.05)
    bed = Bed(host, attached, interval=0.1)
    bed.fail_starts = 3
    with bed:
        assert bed.until(lambda: len(bed.monitors) == 1)
        assert bed.err.getvalue().count("cannot start ip monitor: ip not found on PATH") == 3


def test_weeks_of_restarts_and_repairs_leave_nothing_behind(monkeypatch, host, attached):
    monkeypatch.setattr(watch, "RESTART_PAUSE", 0.0)
    with Bed(host, attached) as bed:
        def cycle():
            host.delete_link(SHIM)
            bed.event()
            assert bed.until(lambda: SHIM in host.links)
            starts = len(bed.monitors)
            bed.monitors[-1].on_end(1, "")
            assert bed.until(lambda: len(bed.monitors) == starts + 1)

        for _ in range(5):  # warm up: caches, the first allocations
            cycle()
        bed.quiet()
        threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
        tracemalloc.start()
        start = tracemalloc.take_snapshot()
        for _ in range(100):
            cycle()
        bed.quiet()
        bed.err.seek(0)  # what the test keeps: the watcher's stderr, the fake monitors
        bed.err.truncate()
        del bed.monitors[:-1]
        host.calls.clear()
        diff = [s for s in tracemalloc.take_snapshot().compare_to(start, "lineno")
                if "cniroute" in s.traceback[0].filename]
        grown = sum(s.size_diff for s in diff)
        tracemalloc.stop()
        assert threading.active_count() == threads and len(os.listdir("/proc/self/fd")) == fds
        assert grown < 16 * 1024, grown  # what cniroute keeps does not grow with the cycles


def test_what_it_remembers_of_shims_that_are_gone_is_dropped(monkeypatch, host, tmp_path):
    with Bed(host, tmp_path, interval=0.05) as bed:
        for n in range(5):
            host.add_link(f"eno{n + 2}", addresses=[f"10.{n}.0.5/16"])
            conf = netconf(tmp_path, prev_result(f"10.{n}.1.2/16"), master=f"eno{n + 2}")
            assert call(monkeypatch, host, "ADD", conf, CNI_CONTAINERID=f"p{n}")[0] == 0
            host.delete_link(f"eno{n + 2}")
            assert bed.until(lambda shim=f"eno{n + 2}.host": shim in bed.watching.reported)
            assert call(monkeypatch, host, "DEL", netconf(tmp_path), CNI_CONTAINERID=f"p{n}")[0] == 0
        assert bed.until(lambda: bed.watching.reported == {})


def test_the_watcher_runs_with_the_cyclic_collector_on(monkeypatch):
    """The launchers turn it off for one short call; a watcher that ran without it kept sh's cycles forever."""
    seen = []
    monkeypatch.setattr(reconcile.Watching, "run", lambda self: seen.append(gc.isenabled()))
    monkeypatch.setattr(watch.Watcher, "signals", lambda self: contextlib.nullcontext())
    gc.disable()
    try:
        assert reconcile.watch(None, 60.0, "-", state_dir="/nonexistent") == 0
        assert seen == [True]
    finally:
        gc.enable()
