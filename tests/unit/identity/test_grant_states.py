"""The role grant state machine against a table written out by hand from the module's docstring:
every (state, action) pair of the hand-written lists moves as the table says or is a 409 that changes
nothing."""

from __future__ import annotations

import pytest

from identity.grants import states
from identity.grants.states import FINAL, TRANSITIONS, allowed_actions, transition
from tests.unit import state_tables

# "pending → confirmed | expired": a second admin confirms it, or its deadline passes first.
STATES = ("pending", "confirmed", "expired")
ACTIONS = ("confirm", "expire")
EXPECTED = {
    ("pending", "confirm"): "confirmed",
    ("pending", "expire"): "expired",
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
    assert refused.details["state"] == state and refused.details["action"] == action
    assert sorted(refused.details["allowed"]) == sorted(legal for (source, legal) in EXPECTED if source == state)


def test_final_states_allow_nothing() -> None:
    assert FINAL == {"confirmed", "expired"}
    for state in FINAL:
        assert allowed_actions(state) == []
