"""The Travel Rule state machine against a table written out by hand from DESIGN.md and the module's
docstring: every (state, action) pair of the hand-written lists moves as the table says or is a 409
that changes nothing."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from compliance.travel_rule import states
from compliance.travel_rule.states import (
    FINAL,
    INITIAL,
    OPEN,
    TRANSITIONS,
    allowed_actions,
    transition,
)
from core.errors import InvalidState

# DESIGN.md: "travel rule: draft → sent → accepted | rejected, expired"; the module's docstring
# says which states expire (draft | sent, the scheduled expiry). Not derived from TRANSITIONS.
STATES = ("draft", "sent", "accepted", "rejected", "expired")
ACTIONS = ("send", "accept", "reject", "expire")
EXPECTED = {
    ("draft", "send"): "sent",
    ("sent", "accept"): "accepted",
    ("sent", "reject"): "rejected",
    ("draft", "expire"): "expired",
    ("sent", "expire"): "expired",
}
PAIRS = list(itertools.product(STATES, ACTIONS))


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), [pair for pair in PAIRS if pair in EXPECTED],
                         ids=[f"{state}-{action}" for state, action in PAIRS if (state, action) in EXPECTED])
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), [pair for pair in PAIRS if pair not in EXPECTED],
                         ids=[f"{state}-{action}" for state, action in PAIRS if (state, action) not in EXPECTED])
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    transfer = SimpleNamespace(state=state)
    table_before = dict(TRANSITIONS)
    with pytest.raises(InvalidState) as refused:
        transfer.state = transition(transfer.state, action)
    assert refused.value.status == 409
    assert refused.value.code == "invalid_state"
    allowed = [legal for (source, legal) in EXPECTED if source == state]
    assert refused.value.details["state"] == state and refused.value.details["action"] == action
    assert sorted(refused.value.details["allowed"]) == sorted(allowed)
    assert transfer.state == state
    assert TRANSITIONS == table_before


def test_final_states_allow_nothing_and_open_ones_can_expire() -> None:
    assert FINAL == {"accepted", "rejected", "expired"}
    assert OPEN == {"draft", "sent"}
    for state in FINAL:
        assert allowed_actions(state) == []
    for state in OPEN:
        assert "expire" in allowed_actions(state)


def test_outbound_starts_draft_and_inbound_starts_sent() -> None:
    assert INITIAL == {"outbound": "draft", "inbound": "sent"}
    # An inbound transfer can only be decided (or expire): we never send what we received.
    assert sorted(allowed_actions(INITIAL["inbound"])) == ["accept", "expire", "reject"]
