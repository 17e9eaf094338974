"""The ticket state machine against a table written out by hand from DESIGN.md, the module's
docstring and README "Helpdesk": every (state, action) pair of the hand-written lists."""

from __future__ import annotations

import itertools

import pytest

from support import states
from support.states import (
    CLOCK_RUNS_IN,
    STAFF_MOVES,
    TRANSITIONS,
    IllegalTransition,
    allowed_moves,
    move_to,
    transition,
)
from tests.unit import state_tables

# DESIGN.md: "ticket: open → in_progress → pending_customer → resolved → closed". The module's
# docstring and README "Helpdesk" add the replies (a customer's reply brings a ticket waiting on
# them back to in_progress and reopens a resolved one; a staff member's first reply takes an open
# ticket in_progress) and closed is final. Staff may also skip ahead (open → pending_customer,
# open → resolved), resume a pending ticket and reopen a resolved one. Not derived from TRANSITIONS.
STATES = ("open", "in_progress", "pending_customer", "resolved", "closed")
ACTIONS = ("start", "await_customer", "resolve", "reopen", "close", "customer_reply", "staff_reply")
STAFF = {"start", "await_customer", "resolve", "reopen", "close"}
EXPECTED = {
    # explicit staff moves
    ("open", "start"): "in_progress",
    ("open", "await_customer"): "pending_customer",
    ("open", "resolve"): "resolved",
    ("in_progress", "await_customer"): "pending_customer",
    ("in_progress", "resolve"): "resolved",
    ("pending_customer", "start"): "in_progress",
    ("pending_customer", "resolve"): "resolved",
    ("resolved", "reopen"): "in_progress",
    ("resolved", "close"): "closed",
    # a customer's reply
    ("open", "customer_reply"): "open",
    ("in_progress", "customer_reply"): "in_progress",
    ("pending_customer", "customer_reply"): "in_progress",
    ("resolved", "customer_reply"): "in_progress",
    # a staff member's public reply
    ("open", "staff_reply"): "in_progress",
    ("in_progress", "staff_reply"): "in_progress",
    ("pending_customer", "staff_reply"): "pending_customer",
    ("resolved", "staff_reply"): "resolved",
}
LEGAL, ILLEGAL = state_tables.split(STATES, ACTIONS, EXPECTED)


def staff_targets(state: str) -> dict[str, str]:
    """target → the staff action reaching it from ``state``, from the hand-written table."""
    return {to: action for (source, action), to in EXPECTED.items() if source == state and action in STAFF}


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_actions_and_staff_moves() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)
    assert STAFF_MOVES == STAFF


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=state_tables.ids(LEGAL))
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=state_tables.ids(ILLEGAL))
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    refused = state_tables.refusal(transition, TRANSITIONS, state, action, code="invalid_transition")
    assert isinstance(refused, IllegalTransition)
    assert refused.details == {"state": state, "action": action, "allowed_moves": sorted(staff_targets(state))}


@pytest.mark.parametrize(("state", "target"), list(itertools.product(STATES, STATES)))
def test_staff_moves_by_target(state: str, target: str) -> None:
    reachable = staff_targets(state)
    assert allowed_moves(state) == sorted(reachable)
    if target in reachable:
        assert move_to(state, target) == reachable[target]
    else:
        with pytest.raises(IllegalTransition) as refused:
            move_to(state, target)
        assert refused.value.status == 409 and refused.value.code == "invalid_transition"
        assert refused.value.details == {"from": state, "to": target, "allowed_moves": sorted(reachable)}


def test_each_staff_move_is_unambiguous() -> None:
    for state in STATES:
        targets = [target for (source, action), target in EXPECTED.items()
                   if source == state and action in STAFF]
        assert len(targets) == len(set(targets))


def test_closed_is_final_and_the_clock_runs_only_while_support_owes_work() -> None:
    assert allowed_moves("closed") == [] and not any(state == "closed" for state, _ in TRANSITIONS)
    assert CLOCK_RUNS_IN == {"open", "in_progress"}


def test_a_customer_reply_always_puts_the_ball_back_in_support_s_court() -> None:
    for state in STATES:
        if state != "closed":
            assert transition(state, "customer_reply") in CLOCK_RUNS_IN
