"""The Travel Rule state machine against a table written out by hand from DESIGN.md and the module's
docstring: every (state, action) pair of the hand-written lists moves as the table says or is a 409
that changes nothing."""

from __future__ import annotations

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
from tests.unit import state_tables

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
LEGAL, ILLEGAL = state_tables.split(STATES, ACTIONS, EXPECTED)


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=state_tables.ids(LEGAL))
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=state_tables.ids(ILLEGAL))
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    refused = state_tables.refusal(transition, TRANSITIONS, state, action, code="invalid_state")
    allowed = [legal for (source, legal) in EXPECTED if source == state]
    assert refused.details["state"] == state and refused.details["action"] == action
    assert sorted(refused.details["allowed"]) == sorted(allowed)


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
