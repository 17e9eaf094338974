"""How a state-machine test walks its table: the expected table is written out by hand in the test
(never read from the module under test), every (state, action) pair of the hand-written lists is
tried, and an illegal one must be a 409 that changes neither the record nor the table."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import pytest

from core.errors import InvalidState

Table = dict[tuple[str, str], str]


def split(states: Sequence[str], actions: Sequence[str], expected: Table) -> tuple[list[tuple[str, str]],
                                                                                   list[tuple[str, str]]]:
    """(legal, illegal) pairs of every state × action, by the hand-written table."""
    pairs = list(itertools.product(states, actions))
    return [pair for pair in pairs if pair in expected], [pair for pair in pairs if pair not in expected]


def ids(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{state}-{action}" for state, action in pairs]


def refusal(transition: Callable[[str, str], str], table: Table, state: str, action: str, *,
            code: str) -> InvalidState:
    """The 409 ``code`` an illegal move answers, after checking that it changed nothing."""
    record = SimpleNamespace(state=state)
    before = dict(table)
    with pytest.raises(InvalidState) as refused:
        record.state = transition(record.state, action)
    assert refused.value.status == 409 and refused.value.code == code
    assert record.state == state
    assert table == before
    return refused.value
