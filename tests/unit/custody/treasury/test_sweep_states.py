"""The sweep state machine, exhaustively, against a table written out here by hand: every (state,
action) pair either moves as this table says or is a 409 that changes nothing."""

from __future__ import annotations

import pytest

from custody.treasury.states import (
    ACTIONS,
    ACTIVE,
    FINAL,
    STATES,
    TRANSITIONS,
    allowed_actions,
    transition,
)
from tests.unit import state_tables

EXPECTED_STATES = ("pending_topup", "topup_sent", "ready", "sweeping", "confirmed", "failed")
EXPECTED_ACTIONS = ("send_topup", "gas_present", "topup_confirmed", "retry_topup", "need_topup", "send_sweep",
                    "confirm", "fail")
EXPECTED = {
    ("pending_topup", "send_topup"): "topup_sent",
    ("pending_topup", "gas_present"): "ready",
    ("topup_sent", "topup_confirmed"): "ready",
    ("topup_sent", "retry_topup"): "pending_topup",
    ("ready", "need_topup"): "pending_topup",
    ("ready", "send_sweep"): "sweeping",
    ("ready", "fail"): "failed",
    ("sweeping", "confirm"): "confirmed",
    ("sweeping", "fail"): "failed",
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


def test_final_states_allow_nothing_and_the_rest_are_active() -> None:
    assert FINAL == {"confirmed", "failed"}
    for state in FINAL:
        assert allowed_actions(state) == []
    assert set(ACTIVE) == set(EXPECTED_STATES) - FINAL


def test_the_sweep_is_only_asked_for_once_the_gas_is_there() -> None:
    # The one way into `sweeping` is from `ready`, and `ready` is reached from a top-up only once it is
    # confirmed (or found unnecessary): a token sweep never goes out before its top-up's confirmations.
    assert {state for (state, _), target in EXPECTED.items() if target == "sweeping"} == {"ready"}
    assert {(state, action) for (state, action), target in EXPECTED.items() if target == "ready"} == {
        ("pending_topup", "gas_present"), ("topup_sent", "topup_confirmed")}


def test_every_state_is_reachable_and_both_paths_end_confirmed() -> None:
    reached = {"pending_topup", "ready"}  # where a token sweep and a native one start
    for start in ("pending_topup", "ready"):
        frontier = [start]
        while frontier:
            state = frontier.pop()
            for action in allowed_actions(state):
                target = transition(state, action)
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
    assert reached == set(EXPECTED_STATES)
    state = "pending_topup"
    for action in ("send_topup", "topup_confirmed", "send_sweep", "confirm"):
        state = transition(state, action)
    assert state == "confirmed"
    assert transition(transition("ready", "send_sweep"), "confirm") == "confirmed"
