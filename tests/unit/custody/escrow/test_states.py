"""The escrow state machine against a table written out by hand from DESIGN.md: every
(state, action) pair of the hand-written lists moves as the table says or is a 409 that changes
nothing. tests/integration/custody/escrow/test_contracts.py walks the same lists through the API."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from core.errors import InvalidState
from custody.escrow import states
from custody.escrow.states import TRANSITIONS, allowed_actions, transition

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
PAIRS = list(itertools.product(STATES, ACTIONS))
LEGAL = [pair for pair in PAIRS if pair in EXPECTED]
ILLEGAL = [pair for pair in PAIRS if pair not in EXPECTED]


def allowed(state: str) -> list[str]:
    """The actions ``state`` allows, from the hand-written table."""
    return sorted(action for (source, action) in EXPECTED if source == state)


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=[f"{s}-{a}" for s, a in LEGAL])
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    escrow = SimpleNamespace(state=state)
    table_before = dict(TRANSITIONS)
    with pytest.raises(InvalidState) as refused:
        escrow.state = transition(escrow.state, action)
    assert refused.value.status == 409 and refused.value.code == "invalid_state"
    assert refused.value.details["state"] == state and refused.value.details["action"] == action
    assert sorted(refused.value.details["allowed"]) == allowed(state)
    assert escrow.state == state
    assert TRANSITIONS == table_before


@pytest.mark.parametrize("state", STATES)
def test_allowed_actions_are_the_table_s(state: str) -> None:
    assert sorted(allowed_actions(state)) == allowed(state)


def test_released_resolved_and_cancelled_are_final() -> None:
    assert [state for state in STATES if not allowed(state)] == ["released", "resolved", "cancelled"]
