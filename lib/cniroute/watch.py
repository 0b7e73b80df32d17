"""`route reconcile --watch`: stay running and keep the node's shims and pod routes in shape (docs/self-healing.md).

It follows `ip -json monitor link address route` (started through the runner, as every ip call) and runs a
pass (reconcile.py) once the node's links, addresses or routes have changed: when the events have settled for
SETTLE s, at most BURST s after the first, so that a burst (a deleted shim takes its addresses and routes
with it) costs one pass. The lines are only wake-ups and are never parsed: iproute2 prints monitor events as
text even with -json. A full pass also runs every --interval seconds, and whenever the monitor (re)starts,
for what happened while it was not running. A pass that repairs something causes events, hence one more
pass, which finds nothing to do.

Passes take the shims' locks as ADD and DEL do. SIGTERM or SIGINT: the pass in progress finishes the shim it
is on, the monitor is stopped, exit 0. kill -9 at any moment leaves what a killed ADD leaves, which the next
pass completes; the monitor dies with the watcher (PR_SET_PDEATHSIG, see runner.SystemHost.follow).
"""
import gc
import os
import select
import signal
import threading
import time

from . import reconcile
from .errors import CNIError
from .journal import Journal
from .runner import Runner

MONITOR = ["-json", "monitor", "link", "address", "route"]
SETTLE = 0.1  # seconds without an event before a pass
BURST = 0.5  # seconds after the first event at most
RESTART_PAUSE = 1.0  # a monitor that ended sooner after its start is started again only after this


def watch(args, host):
    # The launchers turn the cyclic collector off for a call of a few ms; a watcher lives for weeks, and every
    # ip it runs through sh leaves cycles (sh's command and process objects) that only the collector frees.
    gc.enable()
    return Watcher(args, host).run()


class Watcher:
    def __init__(self, args, host):
        self.args = args
        self.host = host
        self.wake_r, self.wake_w = os.pipe()  # anything that should wake the loop writes a byte here
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.stopping = False
        self.events = False  # set by the monitor's thread: something changed
        self.monitor = None
        self.monitor_ended = None  # (status, stderr) of the monitor that ended, set by its waiting thread
        self.monitor_gone = threading.Event()  # the current monitor's end was seen (or there is none)
        self.monitor_gone.set()
        self.generation = 0  # of the current monitor: a late end of a previous one is not this one's
        self.started_at = self.restart_at = 0.0
        self.reported = {}  # shim -> the problems last reported for it
        self.skipped = set()  # what of the state dir the last pass could not read

    def run(self):
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        try:
            self._loop()
        finally:
            self._stop_monitor()
            signal.set_wakeup_fd(wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.monitor_gone.is_set():  # else its thread may still write to the pipe: leave it open
                os.close(self.wake_r)
                os.close(self.wake_w)
        reconcile.say("stopped")
        return 0

    def _loop(self):
        full_due = 0.0  # the first pass runs at once
        ready = False
        while True:
            self._drain()
            if self.stopping:
                return
            now = time.monotonic()
            if self.monitor_ended is not None:
                status, err = self.monitor_ended
                self.monitor_ended, self.monitor = None, None
                reconcile.say(f"ip monitor ended (exit {status}{': ' + err.strip() if err.strip() else ''}); "
                              "starting it again")
                self.restart_at = max(now, self.started_at + RESTART_PAUSE)
            if self.monitor is None and now >= self.restart_at and self._start_monitor():
                full_due = now  # what changed while no monitor ran
            if self.events:
                self._settle()
                self.events = False  # anything before this is seen by the pass
                self._pass()
            elif now >= full_due:
                full_due = now + self.args.interval
                self._pass()
                if not ready:
                    ready = True
                    reconcile.say(f"watching {self.args.state_dir}: a pass on ip monitor events (pid "
                                  f"{getattr(self.monitor, 'pid', '-')}) and every {self.args.interval:g} s")
            else:
                self._wait((full_due if self.monitor else min(full_due, self.restart_at)) - now)

    def _pass(self):
        skipped = []
        try:
            outcomes = reconcile.run_pass(self.args, self.host, stopping=lambda: self.stopping, skipped=skipped)
        except OSError as e:  # the state dir cannot be read: say so, and try again at the next pass
            reconcile.say(f"cannot read {self.args.state_dir}: {e}")
            return
        for line in skipped:
            if line not in self.skipped:  # said once, not every pass
                reconcile.say(line)
        self.skipped = set(skipped)
        for outcome in outcomes:
            before = self.reported.get(outcome.shim, [])
            if outcome.changes or outcome.problems != before:  # the same trouble again is not news
                reconcile.write_log(outcome, self.args.log_file)
                reconcile.say(f"{outcome.shim}: " + reconcile.describe(outcome))
        # Only the shims of this pass: one whose pods have all gone is forgotten (weeks of churn stay bounded).
        self.reported = {outcome.shim: outcome.problems for outcome in outcomes}

    def _settle(self):
        """Return once no event came for SETTLE s, or BURST s after the call, or on another wake-up."""
        end = time.monotonic() + BURST
        while True:
            self.events = False
            left = min(SETTLE, end - time.monotonic())
            if left <= 0 or not self._wait(left):
                return
            self._drain()
            if not self.events or self.stopping or self.monitor_ended is not None:
                return

    # --- the monitor ---
    def _start_monitor(self):
        self.generation += 1
        generation = self.generation
        self.started_at = time.monotonic()
        self.monitor_gone.clear()
        try:
            self.monitor = Runner(Journal(), host=self.host).follow(
                MONITOR, self._on_line, lambda status, err: self._on_end(generation, status, err))
            return True
        except CNIError as e:
            self.monitor_gone.set()
            self.restart_at = self.started_at + RESTART_PAUSE
            reconcile.say(f"cannot start ip monitor: {e}; passes run every {self.args.interval:g} s meanwhile")
            return False

    def _stop_monitor(self):
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor_gone.wait(2.0)

    def _on_line(self, line):  # the monitor's output thread
        self.events = True
        self._wake()

    def _on_end(self, generation, status, err):  # the monitor's waiting thread
        if generation == self.generation:
            self.monitor_ended = (status, err)
            self.monitor_gone.set()
            self._wake()

    # --- waking up ---
    def _on_signal(self, signum, frame):
        self.stopping = True  # the C handler has written to wake_w already (set_wakeup_fd)

    def _wake(self):
        try:
            os.write(self.wake_w, b"!")
        except BlockingIOError:  # full: a wake-up is pending anyway
            pass

    def _wait(self, seconds):
        """Whether something woke the loop within `seconds`."""
        return bool(select.select([self.wake_r], [], [], max(0.0, seconds))[0])

    def _drain(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
