"""When `route reconcile --watch` should run a pass: the watcher's clock and ears (docs/self-healing.md).

It follows `ip -json monitor link address route` (started through the runner, as every ip call) and says a pass
is due once the node's links, addresses or routes have changed: when the events have settled for SETTLE s, at
most BURST s after the first, so that a burst (a deleted shim takes its addresses and routes with it) costs one
pass. The lines are only wake-ups and are never parsed: iproute2 prints monitor events as text even with -json.
A full pass is also due every `interval` seconds, and whenever the monitor (re)starts, for what happened while
it was not running. The passes themselves, and what they report, are reconcile's.

SIGTERM or SIGINT: no pass is due any more (the one in progress may ask `stopping` between shims), the monitor
is stopped. kill -9 at any moment: the monitor dies with the watcher (PR_SET_PDEATHSIG, see
runner.SystemHost.follow).
"""
import contextlib
import os
import select
import signal
import threading
import time

from .errors import CNIError
from .journal import Journal
from .runner import Runner

MONITOR = ["-json", "monitor", "link", "address", "route"]
SETTLE = 0.1  # seconds without an event before a pass
BURST = 0.5  # seconds after the first event at most
RESTART_PAUSE = 1.0  # a monitor that ended sooner after its start is started again only after this


class Watcher:
    """Answers one question, `pass_due()`: wait until a pass should run. `say(text)` tells a person about the
    monitor (ended, restarted, cannot start)."""

    def __init__(self, host, interval, say):
        self.host, self.interval, self.say = host, interval, say
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
        self.down_since = time.monotonic()  # of the monitor; None while one runs
        self.restarts = 0  # of the monitor, after its first start
        self.full_due = 0.0  # the first pass is due at once

    @contextlib.contextmanager
    def signals(self):
        """SIGTERM and SIGINT stop the watcher while inside (main thread only, as Python's signal handlers)."""
        stops = (signal.SIGTERM, signal.SIGINT)
        handlers = {sig: signal.signal(sig, lambda signum, frame: self.stop()) for sig in stops}
        wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        try:
            yield self
        finally:
            signal.set_wakeup_fd(wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def close(self):
        self._stop_monitor()
        if self.monitor_gone.is_set():  # else its thread may still write to the pipe: leave it open
            os.close(self.wake_r)
            os.close(self.wake_w)

    def stop(self):
        """No pass is due any more; a pass_due() that waits returns False."""
        self.stopping = True
        self._wake()

    @property
    def monitor_pid(self):
        return getattr(self.monitor, "pid", None)

    def monitor_state(self):
        """(the monitor's pid or None, seconds it has been down or None, how often it was started again)."""
        down_for = None if self.down_since is None else time.monotonic() - self.down_since
        return self.monitor_pid, down_for, self.restarts

    def due_in(self):
        """Seconds until the next full pass is due, at the latest."""
        return max(0.0, self.full_due - time.monotonic())

    def pass_due(self):
        """Wait until a pass is due: True; False once stopped."""
        while True:
            self._drain()
            if self.stopping:
                return False
            now = time.monotonic()
            if self.monitor_ended is not None:
                status, err = self.monitor_ended
                self.monitor_ended, self.monitor = None, None
                self.down_since = now
                self.say(f"ip monitor ended (exit {status}{': ' + err.strip() if err.strip() else ''}); "
                         "starting it again")
                self.restart_at = max(now, self.started_at + RESTART_PAUSE)
            if self.monitor is None and now >= self.restart_at and self._start_monitor():
                self.full_due = now  # what changed while no monitor ran
            if self.events:
                self._settle()
                self.events = False  # anything before this is seen by the pass
                return True
            if now >= self.full_due:
                self.full_due = now + self.interval
                return True
            self._wait((self.full_due if self.monitor else min(self.full_due, self.restart_at)) - now)

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
            self.restarts += generation > 1
            self.down_since = None
            return True
        except CNIError as e:
            self.monitor_gone.set()
            self.restart_at = self.started_at + RESTART_PAUSE
            self.say(f"cannot start ip monitor: {e}; passes run every {self.interval:g} s meanwhile")
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
