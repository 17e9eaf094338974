"""Times are timezone-aware UTC and leave the API as RFC 3339 strings."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not allowed: every time is UTC-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
