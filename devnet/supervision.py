"""Keeping the devnet's processes up once it has started.

A child that exits is started again after a delay that doubles with each crash (so a process
that fails at once does not spin), and every exit is logged with the last lines of its log. A
child that crashes ``loop_crashes`` times within ``loop_window`` seconds is in a crash loop: that
is reported as an ALERT and the child is left down, while the rest of the devnet keeps running.
Only a failure during start-up stops the whole devnet (``supervisor._wait_ready``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devnet.processes import ManagedProcess

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    child: ManagedProcess
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor:
    def __init__(self, children: list[ManagedProcess], *, first_delay: float = 1.0, max_delay: float = 30.0,
                 loop_crashes: int = 5, loop_window: float = 120.0, poll: float = 0.5) -> None:
        self.watches = [_Watch(child) for child in children]
        self.first_delay, self.max_delay, self.poll = first_delay, max_delay, poll
        self.loop_crashes, self.loop_window = loop_crashes, loop_window
        self.restarts: dict[str, int] = {child.name: 0 for child in children}
        self.given_up: set[str] = set()

    def run(self, stopped: Callable[[], bool] = lambda: False) -> None:
        """Watch the children until ``stopped()`` (the devnet itself runs until a signal)."""
        while not stopped():
            for watch in self.watches:
                self._check(watch, time.monotonic())
            time.sleep(self.poll)

    def _check(self, watch: _Watch, now: float) -> None:
        child = watch.child
        if child.name in self.given_up:
            return
        if watch.restart_at is not None:
            if now >= watch.restart_at:
                watch.restart_at = None
                self.restarts[child.name] += 1
                child.start()
                log.warning("restarted %s (restart %d, pid %s)", child.name, self.restarts[child.name], child.pid)
            return
        if child.alive():
            return
        code = child.process.returncode if child.process is not None else None
        watch.crashes = [moment for moment in watch.crashes if now - moment < self.loop_window] + [now]
        if len(watch.crashes) >= self.loop_crashes:
            self.given_up.add(child.name)
            log.error("ALERT %s crashed %d times within %.0fs (last exit %s): a crash loop, not restarting it; "
                      "the rest of the devnet keeps running. Last lines of %s:\n%s", child.name, len(watch.crashes),
                      self.loop_window, code, child.log_path, child.tail(), extra={"alert": "devnet_crash_loop"})
            return
        delay = min(self.first_delay * 2 ** (len(watch.crashes) - 1), self.max_delay)
        watch.restart_at = now + delay
        log.warning("%s exited with %s; restarting in %.1fs. Last lines of %s:\n%s", child.name, code, delay,
                    child.log_path, child.tail())
