"""The deposit state machine, every (state, action) pair."""

from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidState
from custody.deposits.models import STATES
from custody.deposits.states import ACTIONS, LIVE, TRANSITIONS, WAITING, transition

EXPECTED = {
    ("seen", "confirm"): "confirming",
    ("confirming", "confirm"): "confirming",
    ("seen", "credit"): "credited",
    ("confirming", "credit"): "credited",
    ("seen", "orphan"): "reorged",
    ("confirming", "orphan"): "reorged",
    ("credited", "orphan"): "reorged",
    ("reorged", "reappear"): "seen",
    ("seen", "move"): "seen",
    ("confirming", "move"): "seen",
    ("credited", "move"): "credited",
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)))
def test_every_state_and_action(state: str, action: str) -> None:
    if (state, action) in EXPECTED:
        assert transition(state, action) == EXPECTED[(state, action)]
    else:
        with pytest.raises(InvalidState):
            transition(state, action)


def test_the_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_only_a_waiting_deposit_can_be_credited_and_a_credit_is_never_undone_but_by_a_reorg() -> None:
    assert {state for state, action in TRANSITIONS if action == "credit"} == set(WAITING)
    assert {action for state, action in TRANSITIONS if state == "credited" and TRANSITIONS[(state, action)] != "credited"} == {"orphan"}
    assert {state for state, action in TRANSITIONS if action == "orphan"} == set(LIVE)
