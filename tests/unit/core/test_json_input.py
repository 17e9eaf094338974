"""Untrusted JSON: the nesting is measured without recursion and bounded before parsing."""

from __future__ import annotations

import pytest

from core.json_input import MAX_DEPTH, TooDeep, loads, nesting_depth


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "]"]', 1), (r'["\"[[[["]', 1),
    (r'["\\", [[]]]', 3), ("[" * 10, 10),
])
def test_nesting_depth_ignores_brackets_in_strings(text, depth):
    assert nesting_depth(text) == depth


def test_too_deep_is_refused_before_parsing():
    with pytest.raises(TooDeep):
        loads("[" * 1_000_000)
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b"\xff", b'{"a": '])
def test_not_json_is_a_value_error(raw):
    with pytest.raises(ValueError):
        loads(raw)
