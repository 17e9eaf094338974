"""The deposit state machine against a table written out by hand from DESIGN.md and the module's
docstring: every (state, action) pair of the hand-written lists."""

from __future__ import annotations

import pytest

from custody.deposits import models, states
from custody.deposits.states import LIVE, TRANSITIONS, WAITING, transition
from tests.unit import state_tables

# DESIGN.md: "deposit: seen → confirming → credited; reorged (reverses a credit if one was made)".
# The module's docstring and the scanner (custody/deposits/tracking.py) add what DESIGN.md leaves
# out: a deposit may be credited straight from ``seen`` (a chain needing one confirmation), every
# new block re-counts a ``confirming`` one, a reorged transfer mined again ``reappear``s as
# ``seen``, and a transfer found in another block ``move``s (counting starts again unless the
# credit is in force). A deposit key found again with another recipient, asset or amount is
# ``supersede``d from any state but ``orphaned``: the old row is ``orphaned`` for good (its credit
# reversed) and a new revision of the key is recorded. Not derived from TRANSITIONS.
STATES = ("seen", "confirming", "credited", "reorged", "orphaned")
ACTIONS = ("confirm", "credit", "orphan", "reappear", "move", "supersede")
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
    ("seen", "supersede"): "orphaned",
    ("confirming", "supersede"): "orphaned",
    ("credited", "supersede"): "orphaned",
    ("reorged", "supersede"): "orphaned",
}
LEGAL, ILLEGAL = state_tables.split(STATES, ACTIONS, EXPECTED)


def test_the_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(models.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=state_tables.ids(LEGAL))
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=state_tables.ids(ILLEGAL))
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    refused = state_tables.refusal(transition, TRANSITIONS, state, action, code="invalid_state")
    assert refused.details == {"state": state, "action": action}


def test_only_a_waiting_deposit_can_be_credited_and_a_credit_is_never_undone_but_by_a_reorg() -> None:
    assert set(WAITING) == {"seen", "confirming"}
    assert set(LIVE) == {"seen", "confirming", "credited"}
    assert {state for state, action in EXPECTED if action == "credit"} == set(WAITING)
    leaving_credited = {action for (state, action), to in EXPECTED.items() if state == "credited" and to != "credited"}
    assert leaving_credited == {"orphan", "supersede"}
    assert {state for state, action in EXPECTED if action == "orphan"} == set(LIVE)


def test_an_orphaned_deposit_is_final() -> None:
    assert not [action for state, action in EXPECTED if state == "orphaned"]
    assert {state for state, action in EXPECTED if action == "supersede"} == {*LIVE, "reorged"}
