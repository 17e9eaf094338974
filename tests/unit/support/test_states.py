"""The ticket state machine, every (state, action) pair against an independent listing."""

from __future__ import annotations

import itertools

import pytest

from support.states import (
    ACTIONS,
    CLOCK_RUNS_IN,
    STAFF_MOVES,
    STATES,
    TRANSITIONS,
    IllegalTransition,
    allowed_moves,
    move_to,
    transition,
)

# Written out by hand from the specification, not derived from TRANSITIONS.
EXPECTED = {
    "open": {"start": "in_progress", "await_customer": "pending_customer", "resolve": "resolved",
             "customer_reply": "open", "staff_reply": "in_progress"},
    "in_progress": {"await_customer": "pending_customer", "resolve": "resolved",
                    "customer_reply": "in_progress", "staff_reply": "in_progress"},
    "pending_customer": {"start": "in_progress", "resolve": "resolved",
                         "customer_reply": "in_progress", "staff_reply": "pending_customer"},
    "resolved": {"reopen": "in_progress", "close": "closed", "customer_reply": "in_progress",
                 "staff_reply": "resolved"},
    "closed": {},
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)))
def test_every_state_and_action(state: str, action: str) -> None:
    expected = EXPECTED[state].get(action)
    if expected is None:
        with pytest.raises(IllegalTransition) as refused:
            transition(state, action)
        assert refused.value.status == 409
        assert refused.value.details["allowed_moves"] == allowed_moves(state)
    else:
        assert transition(state, action) == expected


def test_the_table_names_only_known_states_and_actions() -> None:
    for (state, action), target in TRANSITIONS.items():
        assert state in STATES and action in ACTIONS and target in STATES


@pytest.mark.parametrize(("state", "target"), list(itertools.product(STATES, STATES)))
def test_staff_moves_by_target(state: str, target: str) -> None:
    reachable = {EXPECTED[state][action]: action for action in STAFF_MOVES if action in EXPECTED[state]}
    if target in reachable:
        assert move_to(state, target) == reachable[target]
    else:
        with pytest.raises(IllegalTransition) as refused:
            move_to(state, target)
        assert refused.value.code == "invalid_transition"
        assert refused.value.details == {"from": state, "to": target, "allowed_moves": sorted(reachable)}


def test_each_staff_move_is_unambiguous() -> None:
    for state in STATES:
        targets = [target for (source, action), target in TRANSITIONS.items()
                   if source == state and action in STAFF_MOVES]
        assert len(targets) == len(set(targets))


def test_closed_is_final_and_the_clock_runs_only_while_support_owes_work() -> None:
    assert allowed_moves("closed") == [] and not any(state == "closed" for state, _ in TRANSITIONS)
    assert CLOCK_RUNS_IN == {"open", "in_progress"}


def test_a_customer_reply_always_puts_the_ball_back_in_support_s_court() -> None:
    for state in STATES:
        if state != "closed":
            assert transition(state, "customer_reply") in CLOCK_RUNS_IN
