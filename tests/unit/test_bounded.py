"""A watcher that runs for weeks stays bounded: lock timeouts, passes and restarts of ip monitor leave no
threads, descriptors or memory behind. Counted, over many cycles."""
import fcntl
import os
import threading
import time

import pytest

from cniroute import lock
from cniroute.errors import TryAgainLater

CYCLES = 50


def descriptors():
    return len(os.listdir("/proc/self/fd"))


def settle(condition):
    for _ in range(500):
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_lock_timeouts_while_a_holder_stays_park_one_thread_and_one_descriptor_at_most(tmp_path):
    path = str(tmp_path / "lock")
    threads, fds = threading.active_count(), descriptors()
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's ADD, stuck
    for _ in range(CYCLES):
        with pytest.raises(TryAgainLater), lock.held(path, 0.01):
            pass
    assert threading.active_count() <= threads + 1
    assert descriptors() <= fds + 2  # the holder's, and the one parked wait's
    os.close(holder)
    with lock.held(path, 5.0):  # the parked wait has let go of it
        pass
    assert settle(lambda: threading.active_count() == threads and descriptors() == fds)


def test_a_caller_that_comes_while_an_earlier_wait_is_parked_gets_the_lock_through_it(tmp_path):
    path = str(tmp_path / "lock")
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    with pytest.raises(TryAgainLater), lock.held(path, 0.01):
        pass
    got = []

    def later():
        with lock.held(path, 30.0):
            got.append(time.monotonic())
            probe = os.open(path, os.O_RDWR)
            try:  # it is held for real
                with pytest.raises(BlockingIOError):
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(probe)

    waiter = threading.Thread(target=later)
    waiter.start()
    time.sleep(0.1)
    os.close(holder)
    waiter.join(30.0)
    assert len(got) == 1


def test_two_callers_waiting_on_one_parked_wait_get_the_lock_one_after_the_other(tmp_path):
    path = str(tmp_path / "lock")
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    with pytest.raises(TryAgainLater), lock.held(path, 0.01):
        pass  # a wait is parked now
    inside, overlaps, done = [], [], []

    def caller():
        try:
            with lock.held(path, 0.5):
                inside.append(1)
                overlaps.append(len(inside))
                time.sleep(0.1)
                inside.pop()
            done.append("got it")
        except TryAgainLater:
            done.append("busy")

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    os.close(holder)
    for t in threads:
        t.join(10.0)
    assert overlaps and max(overlaps) == 1, overlaps  # never two holders at once
    assert "got it" in done
