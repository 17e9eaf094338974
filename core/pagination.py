"""Opaque cursors for keyset pagination: stable under concurrent inserts, unlike offsets."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import literal, tuple_

from core import json_input
from core.errors import InvalidInput

T = TypeVar("T")


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(value) for value in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    try:
        values = json_input.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(values, list) and len(values) == parts and all(isinstance(v, str) for v in values)):
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from None


def keyset_before(cursor: str, created_at: Any, row_id: Any) -> Any:
    """The SQL condition for the page after ``cursor`` in newest-first ``(created_at, id)`` order.

    A row-value comparison in SQL: a Python tuple ``<`` would compare only ``created_at`` and skip
    every row sharing the cursor's timestamp (rows created in one transaction do).
    """
    moment_text, id_text = decode_cursor(cursor, 2)
    try:
        moment, ident = datetime.fromisoformat(moment_text), uuid.UUID(id_text)
    except ValueError:
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from None
    if moment.tzinfo is None:
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor")
    return tuple_(created_at, row_id) < tuple_(literal(moment), literal(ident))


def next_page(rows: Sequence[T], limit: int) -> tuple[list[T], str | None]:
    """The page (``limit`` of the ``limit + 1`` rows fetched) and the cursor of the next one, if any."""
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, encode_cursor(page[-1].created_at.isoformat(), page[-1].id) if more else None  # type: ignore[attr-defined]
