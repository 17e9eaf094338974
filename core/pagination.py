"""Opaque cursors for keyset pagination: stable under concurrent inserts, unlike offsets."""

from __future__ import annotations

import base64
import json
from typing import Any

from core.errors import InvalidInput


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(value) for value in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(values, list) and len(values) == parts and all(isinstance(v, str) for v in values)):
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from None
