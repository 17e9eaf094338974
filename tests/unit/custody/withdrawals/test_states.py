"""The withdrawal state machine, exhaustively: every (state, action) pair either moves as the table says or is a 409."""

from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidState
from custody.withdrawals.states import ACTIONS, FINAL, STATES, TRANSITIONS, allowed_actions, transition


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)))
def test_every_pair_follows_the_table(state: str, action: str) -> None:
    if (state, action) in TRANSITIONS:
        assert transition(state, action) == TRANSITIONS[(state, action)]
    else:
        with pytest.raises(InvalidState) as refused:
            transition(state, action)
        assert refused.value.status == 409
        assert refused.value.details == {"state": state, "action": action, "allowed": allowed_actions(state)}


def test_the_table_names_only_known_states_and_actions() -> None:
    for (state, action), target in TRANSITIONS.items():
        assert state in STATES and target in STATES and action in ACTIONS


def test_final_states_allow_nothing() -> None:
    for state in FINAL:
        assert allowed_actions(state) == []


def test_rollback_only_before_a_transaction_can_exist() -> None:
    assert {state for (state, action) in TRANSITIONS if action == "rollback"} == {
        "requested", "awaiting_travel_rule", "pending_approval", "approved"}


def test_every_state_is_reachable_from_requested() -> None:
    reached, frontier = {"requested"}, ["requested"]
    while frontier:
        state = frontier.pop()
        for action in allowed_actions(state):
            target = transition(state, action)
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(STATES)


def test_the_happy_path() -> None:
    state = "requested"
    for action in ("approve", "request_signature", "sign", "broadcast", "replace", "confirm"):
        state = transition(state, action)
    assert state == "confirmed"


def test_the_travel_rule_path_waits_then_needs_approval() -> None:
    state = transition("requested", "await_travel_rule")
    assert state == "awaiting_travel_rule"
    assert set(allowed_actions(state)) == {"travel_rule_accept", "travel_rule_reject", "rollback"}
    assert transition(state, "travel_rule_reject") == "failed"
    state = transition(state, "travel_rule_accept")
    assert state == "pending_approval"
    assert transition(transition(state, "approve_partial"), "approve") == "approved"
