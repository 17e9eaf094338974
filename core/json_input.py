"""JSON from outside the process, with its nesting bounded before it is parsed.

The C decoder recurses once per level, and web3's py_ecc raises the interpreter's recursion limit
to 100,000 at import: a body of 100,000 ``[`` overflows the C stack and kills the process with
no traceback instead of raising RecursionError. So the depth is measured first, in linear time
and without recursion, and anything deeper than a request can need is refused unparsed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64  # the deepest request model (IVMS101) needs about ten

# A complete JSON string literal; possessive so an unterminated one cannot backtrack.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKETS = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, brackets inside strings not counted."""
    brackets = _BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and never money.
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH, **options: Any) -> Any:
    """``json.loads`` for untrusted input: UTF-8 only (RFC 8259), no NaN or Infinity, bounded depth.

    Raises ``TooDeep`` (a ValueError) past ``max_depth``, ValueError for anything that is not JSON.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError is a ValueError
    if nesting_depth(text) > max_depth:
        raise TooDeep(max_depth)
    return json.loads(text, parse_constant=_reject_constant, **options)
