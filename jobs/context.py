"""The settings of the process a job runs in.

Messages carry ids, never configuration: a job that needs a setting (the xpub file, the pool
size) reads the settings its worker process was started with. ``run_worker`` sets them once
at boot; a test running jobs in its own process sets them with ``using_settings``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from core.settings import Settings
from jobs.registry import JobError

_settings: Settings | None = None


def set_settings(settings: Settings | None) -> None:
    global _settings
    _settings = settings


def current_settings() -> Settings:
    """The worker process's settings; a job calling this outside a worker fails with a clear error."""
    if _settings is None:
        raise JobError("no settings in this process: a worker sets them at boot (jobs.context.set_settings)")
    return _settings


@contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Run jobs with ``settings`` for the block, then put the previous ones back."""
    previous = _settings
    set_settings(settings)
    try:
        yield settings
    finally:
        set_settings(previous)
