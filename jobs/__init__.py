"""Background jobs: actors declare them with ``@job``; every other module sends them by name."""

from jobs.registry import external, job, message, name, send_after_commit

__all__ = ["external", "job", "message", "name", "send_after_commit"]
