"""The KYC state machine against a table written out by hand from DESIGN.md and the module's
docstring: every (state, action) pair of the hand-written lists."""

from __future__ import annotations

import pytest

from compliance.kyc import states
from compliance.kyc.states import DECISIONS, TRANSITIONS, transition
from core.errors import InvalidState
from tests.unit import state_tables

# DESIGN.md: "KYC: unverified → pending → approved | rejected | needs_info"; the module's docstring
# adds needs_info → pending on resubmission (README "KYC" says the same), and makes approved and
# rejected final. Not derived from TRANSITIONS.
STATES = ("unverified", "pending", "approved", "rejected", "needs_info")
ACTIONS = ("submit", "approve", "reject", "request_info")
EXPECTED = {
    ("unverified", "submit"): "pending",
    ("needs_info", "submit"): "pending",
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("pending", "request_info"): "needs_info",
}
LEGAL, ILLEGAL = state_tables.split(STATES, ACTIONS, EXPECTED)


def test_table_is_exactly_the_design() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=state_tables.ids(LEGAL))
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=state_tables.ids(ILLEGAL))
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    # README "KYC": anything else is 409 kyc_invalid_state
    refused = state_tables.refusal(transition, TRANSITIONS, state, action, code="kyc_invalid_state")
    assert refused.details == {"state": state, "action": action}


def test_approved_and_rejected_are_final() -> None:
    for state in ("approved", "rejected"):
        for action in ACTIONS:
            with pytest.raises(InvalidState):
                transition(state, action)


def test_every_decision_names_an_action() -> None:
    assert DECISIONS == {"approved": "approve", "rejected": "reject", "needs_info": "request_info"}
    for decision, action in DECISIONS.items():
        assert EXPECTED[("pending", action)] == decision
        assert transition("pending", action) == decision
