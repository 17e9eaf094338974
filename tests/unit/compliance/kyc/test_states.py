"""The KYC state machine, every (state, action) pair."""

from __future__ import annotations

import itertools

import pytest

from compliance.kyc.states import ACTIONS, DECISIONS, STATES, TRANSITIONS, transition
from core.errors import InvalidState

EXPECTED = {
    ("unverified", "submit"): "pending",
    ("needs_info", "submit"): "pending",
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("pending", "request_info"): "needs_info",
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)),
                         ids=[f"{s}-{a}" for s, a in itertools.product(STATES, ACTIONS)])
def test_every_pair_moves_as_the_table_says_or_is_refused(state: str, action: str) -> None:
    if (state, action) in EXPECTED:
        assert transition(state, action) == EXPECTED[(state, action)]
    else:
        with pytest.raises(InvalidState) as refused:
            transition(state, action)
        assert refused.value.status == 409
        assert refused.value.details == {"state": state, "action": action}


def test_table_is_exactly_the_design() -> None:
    assert TRANSITIONS == EXPECTED


def test_every_decision_names_an_action() -> None:
    assert set(DECISIONS) == {"approved", "rejected", "needs_info"}
    assert set(DECISIONS.values()) <= set(ACTIONS)
    for decision, action in DECISIONS.items():
        assert transition("pending", action) == decision
