"""The Travel Rule state machine, exhaustively: every (state, action) pair moves as the table says or is a 409."""

from __future__ import annotations

import itertools

import pytest

from compliance.travel_rule.states import (
    ACTIONS,
    FINAL,
    INITIAL,
    OPEN,
    STATES,
    TRANSITIONS,
    allowed_actions,
    transition,
)
from core.errors import InvalidState

EXPECTED = {
    ("draft", "send"): "sent",
    ("sent", "accept"): "accepted",
    ("sent", "reject"): "rejected",
    ("draft", "expire"): "expired",
    ("sent", "expire"): "expired",
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)),
                         ids=[f"{state}-{action}" for state, action in itertools.product(STATES, ACTIONS)])
def test_every_pair_follows_the_table(state: str, action: str) -> None:
    if (state, action) in EXPECTED:
        assert transition(state, action) == EXPECTED[(state, action)]
    else:
        with pytest.raises(InvalidState) as refused:
            transition(state, action)
        assert refused.value.status == 409
        assert refused.value.code == "invalid_state"
        assert refused.value.details == {"state": state, "action": action, "allowed": allowed_actions(state)}


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_final_states_allow_nothing_and_open_ones_can_expire() -> None:
    assert FINAL == {"accepted", "rejected", "expired"}
    for state in FINAL:
        assert allowed_actions(state) == []
    for state in OPEN:
        assert "expire" in allowed_actions(state)


def test_outbound_starts_draft_and_inbound_starts_sent() -> None:
    assert INITIAL == {"outbound": "draft", "inbound": "sent"}
    # An inbound transfer can only be decided (or expire): we never send what we received.
    assert sorted(allowed_actions(INITIAL["inbound"])) == ["accept", "expire", "reject"]
