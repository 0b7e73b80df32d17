"""The watcher's figures and heartbeat (docs/metrics.md): what `route reconcile --watch` has done since it
started, and whether its loop still makes progress.

reconcile.Watching keeps one Figures and tells it when a pass starts and ends. Each time, the whole of it is
written to STATUS_FILE under the state dir (to a temporary name, then renamed), where `route status` (status.py)
and the probes read it; metrics.py serves the same snapshot to Prometheus. Times that another process compares
with its own now are on CLOCK_MONOTONIC, the clock the watcher schedules its passes by (one clock for the whole
node, not set by NTP or by hand); the times a person reads are Unix times.
"""
import copy
import json
import os
import threading
import time
from collections import Counter

from . import files

STATUS_FILE = "watcher.json"
# Upper bounds of the pass duration histogram, in seconds (a pass takes ~0.05 s per shim on a quiet node).
PASS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RESULTS = ("in_shape", "not_in_shape", "failed")  # of a pass: failed = the state dir could not be read
REPAIRS = ("shim", "address_copy", "node_route", "masquerade_rule", "pod_side")  # the kinds runner.counting() names


def clock():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Figures:
    """The figures of one watcher, updated by its loop and read by other threads (the metrics server) through
    snapshot(). Counters (passes, repairs, errors) add up since the start; the rest is of the last pass."""

    def __init__(self, state_dir, interval, say, write=True):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, STATUS_FILE)
        self.say = say
        self.write = write  # a dry run writes nothing
        self.unwritable = None  # why the last write failed, said once
        self.lock = threading.Lock()
        self.doc = {
            "pid": os.getpid(), "started": time.time(), "interval": interval,
            "loop": {"state": "starting", "since": clock()},
            "monitor": {"pid": None, "down_since": None, "restarts": 0},
            "passes": Counter(), "pass_seconds": {"sum": 0.0, "buckets": [0] * (len(PASS_BUCKETS) + 1)},
            "repairs": Counter(), "errors": Counter(),
            "last_pass": None, "not_entered": Counter(), "attachments": Counter(),
        }

    def pass_started(self, monitor):
        self._update(monitor, {"state": "pass", "since": clock()})

    def pass_ended(self, monitor, outcomes, seconds, due_in):
        """A pass's Outcomes (reconcile.Outcome; None: the state dir could not be read), its duration, and the
        seconds until the next full pass is due at the latest."""
        with self.lock:
            doc = self.doc
            problems = [f"{o.shim}: {p}" for o in outcomes or () for p in o.problems]
            result = "failed" if outcomes is None else "not_in_shape" if problems else "in_shape"
            doc["passes"][result] += 1
            doc["pass_seconds"]["sum"] += seconds
            doc["pass_seconds"]["buckets"][sum(seconds > bound for bound in PASS_BUCKETS)] += 1
            doc["not_entered"], doc["attachments"] = Counter(), Counter()
            for outcome in outcomes or ():
                doc["repairs"].update(outcome.tally.repairs)
                doc["errors"].update(outcome.tally.errors)
                doc["not_entered"].update(outcome.tally.not_entered)
                doc["attachments"].update(outcome.tally.attachments)
            doc["last_pass"] = {"at": time.time(), "seconds": round(seconds, 6), "result": result,
                                "shims": len(outcomes or ()), "problems": problems}
        self._update(monitor, {"state": "idle", "since": clock(), "next_by": clock() + due_in})

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.doc)

    def _update(self, monitor, loop):
        """`monitor`: (its pid or None, seconds it has been down or None, restarts)."""
        pid, down_for, restarts = monitor
        with self.lock:
            self.doc["loop"] = loop
            self.doc["monitor"] = {"pid": pid, "down_since": None if down_for is None else clock() - down_for,
                                   "restarts": restarts}
            text = json.dumps(self.doc, sort_keys=True)
        if self.write:
            self._write(text)

    def _write(self, text):
        try:
            files.write_whole(self.state_dir, (), STATUS_FILE, text)
            self.unwritable = None
        except OSError as e:
            if self.unwritable is None:  # said once, not at every pass
                self.say(f"cannot write {self.path}: {files.why(e)}")
            self.unwritable = e


def read(state_dir):
    """The last figures a watcher wrote under `state_dir` (OSError when there are none, ValueError when they
    are not a watcher's)."""
    doc = json.loads(files.read_text(os.path.join(state_dir, STATUS_FILE)))
    if not isinstance(doc, dict) or not isinstance(doc.get("loop"), dict):
        raise ValueError("not a watcher's status")
    return doc


def liveness(doc, stall, now=None):
    """Why the watcher that wrote `doc` has stopped making progress, or None while it makes some: a pass that
    has run for more than `stall` s, a loop that should have run a pass `stall` s ago, an ip monitor down (and
    not started again) for more than `stall` s."""
    now = clock() if now is None else now
    loop, monitor = doc["loop"], doc.get("monitor") or {}
    if loop["state"] in ("pass", "starting") and now - loop["since"] > stall:
        return f"a pass has run for {now - loop['since']:.0f} s"
    if loop["state"] == "idle" and now - loop.get("next_by", now) > stall:
        return f"its next pass was due {now - loop['next_by']:.0f} s ago"
    if monitor.get("down_since") is not None and now - monitor["down_since"] > stall:
        return f"ip monitor has not run for {now - monitor['down_since']:.0f} s"
    return None

