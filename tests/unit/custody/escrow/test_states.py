"""The escrow state machine against a table written out by hand from DESIGN.md: every
(state, action) pair of the hand-written lists moves as the table says or is a 409 that changes
nothing. tests/integration/custody/escrow/test_contracts.py walks the same lists through the API."""

from __future__ import annotations

import pytest

from custody.escrow import states
from custody.escrow.states import TRANSITIONS, allowed_actions, transition
from tests.unit import state_tables

# DESIGN.md: "escrow: created → funded → released; funded → disputed → resolved (release | refund |
# split); disputed → funded when a dispute is rejected; created → cancelled". The three outcomes
# are one action (``resolve``) whose body names the outcome. Not derived from TRANSITIONS.
STATES = ("created", "funded", "released", "disputed", "resolved", "cancelled")
ACTIONS = ("fund", "cancel", "release", "dispute", "resolve", "reject")
EXPECTED = {
    ("created", "fund"): "funded",
    ("created", "cancel"): "cancelled",
    ("funded", "release"): "released",
    ("funded", "dispute"): "disputed",
    ("disputed", "resolve"): "resolved",
    ("disputed", "reject"): "funded",
}
LEGAL, ILLEGAL = state_tables.split(STATES, ACTIONS, EXPECTED)


def allowed(state: str) -> list[str]:
    """The actions ``state`` allows, from the hand-written table."""
    return sorted(action for (source, action) in EXPECTED if source == state)


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
    assert sorted(refused.details["allowed"]) == allowed(state)


@pytest.mark.parametrize("state", STATES)
def test_allowed_actions_are_the_table_s(state: str) -> None:
    assert sorted(allowed_actions(state)) == allowed(state)


def test_released_resolved_and_cancelled_are_final() -> None:
    assert [state for state in STATES if not allowed(state)] == ["released", "resolved", "cancelled"]
