"""The devnet keeps running when one of its processes crashes: the child is restarted with backoff,
and a child that keeps crashing is reported and left down, never taking the others with it."""

from __future__ import annotations

import logging
import sys
import threading
import time

import pytest

from devnet.processes import ManagedProcess
from devnet.supervision import Supervisor

WAIT = 30.0  # a bound for a hung test, not a performance limit


def child(name: str, code: str, tmp_path) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-c", code], log_path=tmp_path / f"{name}.log").start()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:.0f}s: {what}")
        time.sleep(0.02)


@pytest.fixture
def children(tmp_path):
    marker = tmp_path / "crashed-once"
    started = [
        child("steady", "import time; time.sleep(600)", tmp_path),
        # Crashes the first time it runs, then stays up: a restart heals it.
        child("flaky", f"import pathlib, sys, time\nm = pathlib.Path({str(marker)!r})\n"
                       "if not m.exists():\n    m.touch(); sys.exit(3)\ntime.sleep(600)", tmp_path),
        child("broken", "import sys; print('cannot start: bad config'); sys.exit(2)", tmp_path),
    ]
    yield {process.name: process for process in started}
    for process in started:
        process.stop(timeout=5)


def test_a_crashed_child_is_restarted_and_a_crash_loop_is_reported(children, caplog):
    caplog.set_level(logging.INFO, logger="devnet.supervision")
    steady_pid = children["steady"].pid
    supervisor = Supervisor(list(children.values()), first_delay=0.05, max_delay=0.2, loop_crashes=3,
                            loop_window=60.0, poll=0.02)
    stop = threading.Event()
    running = threading.Thread(target=supervisor.run, args=(stop.is_set,))
    running.start()
    try:
        wait_until(lambda: supervisor.given_up == {"broken"}, "the crash loop reported")
        wait_until(lambda: children["flaky"].alive() and supervisor.restarts["flaky"] == 1, "the flaky child restarted")
        assert running.is_alive()  # the devnet is still up
    finally:
        stop.set()
        running.join(WAIT)
    assert children["steady"].alive() and children["steady"].pid == steady_pid
    assert not children["broken"].alive()
    assert supervisor.restarts["broken"] == 2  # three runs in all, then left down
    text = caplog.text
    assert "flaky exited with 3; restarting in" in text
    assert "ALERT broken crashed 3 times" in text and "cannot start: bad config" in text
