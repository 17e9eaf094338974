"""The withdrawal state machine, exhaustively, against a table written out here by hand from
DESIGN.md: every (state, action) pair either moves as this table says or is a 409 that changes nothing."""

from __future__ import annotations

import pytest

from custody.withdrawals.states import ACTIONS, FINAL, STATES, TRANSITIONS, allowed_actions, transition
from tests.unit import state_tables

EXPECTED_STATES = ("requested", "awaiting_travel_rule", "pending_approval", "approved", "signing", "signed",
                   "broadcast", "confirmed", "failed", "rolled_back")
EXPECTED_ACTIONS = ("await_travel_rule", "travel_rule_accept", "travel_rule_reject", "approve_partial", "approve",
                    "request_signature", "sign", "refuse", "broadcast", "replace", "request_cancel", "cancel",
                    "confirm", "revert", "rollback")
EXPECTED = {
    ("requested", "await_travel_rule"): "awaiting_travel_rule",
    ("awaiting_travel_rule", "travel_rule_accept"): "pending_approval",
    ("awaiting_travel_rule", "travel_rule_reject"): "failed",
    ("requested", "approve_partial"): "pending_approval",
    ("pending_approval", "approve_partial"): "pending_approval",
    ("requested", "approve"): "approved",
    ("pending_approval", "approve"): "approved",
    ("approved", "request_signature"): "signing",
    ("signing", "sign"): "signed",
    ("signing", "refuse"): "failed",
    ("signed", "broadcast"): "broadcast",
    ("broadcast", "replace"): "broadcast",
    ("broadcast", "request_cancel"): "broadcast",
    ("broadcast", "cancel"): "failed",
    ("broadcast", "confirm"): "confirmed",
    ("broadcast", "revert"): "failed",
    ("requested", "rollback"): "rolled_back",
    ("awaiting_travel_rule", "rollback"): "rolled_back",
    ("pending_approval", "rollback"): "rolled_back",
    ("approved", "rollback"): "rolled_back",
}


def test_the_table_is_the_one_written_here() -> None:
    assert (TRANSITIONS, STATES, ACTIONS) == (EXPECTED, EXPECTED_STATES, EXPECTED_ACTIONS)


LEGAL, ILLEGAL = state_tables.split(EXPECTED_STATES, EXPECTED_ACTIONS, EXPECTED)


@pytest.mark.parametrize(("state", "action"), LEGAL, ids=state_tables.ids(LEGAL))
def test_a_legal_pair_moves_as_the_table_says(state: str, action: str) -> None:
    assert transition(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=state_tables.ids(ILLEGAL))
def test_an_illegal_pair_is_a_409_and_changes_nothing(state: str, action: str) -> None:
    refused = state_tables.refusal(transition, TRANSITIONS, state, action, code="invalid_state")
    assert refused.details == {"state": state, "action": action, "allowed": allowed_actions(state)}


def test_the_table_names_only_known_states_and_actions() -> None:
    for (state, action), target in TRANSITIONS.items():
        assert state in STATES and target in STATES and action in ACTIONS


def test_final_states_allow_nothing() -> None:
    for state in FINAL:
        assert allowed_actions(state) == []


def test_rollback_only_before_a_transaction_can_exist() -> None:
    assert {state for (state, action) in EXPECTED if action == "rollback"} == {
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
