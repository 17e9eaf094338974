"""The CMS workflow table, walked pair by pair."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from content import states
from content.states import ACTIONS, STATES, TRANSITIONS, IllegalMove

EXPECTED = {
    ("draft", "in_review"),
    ("in_review", "approved"),
    ("in_review", "draft"),
    ("approved", "draft"),
    ("approved", "published"),
    ("published", "archived"),
    ("archived", "draft"),
}


@pytest.mark.parametrize(("state", "to"), list(itertools.product(STATES, STATES)))
def test_every_state_target_pair_is_allowed_exactly_when_the_table_says(state, to):
    target = states.next_state(state, to=to)
    if (state, to) in EXPECTED:
        assert target == to
        action, moved = states.move(state, to=to)
        assert moved == to and TRANSITIONS[(state, action)] == to
    else:
        assert target is None
        with pytest.raises(IllegalMove) as refused:
            states.move(state, to=to)
        assert refused.value.status == 409
        assert refused.value.details["allowed"] == [move.to for move in states.allowed_moves(state)]


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)))
def test_every_state_action_pair_follows_the_table(state, action):
    assert states.next_state(state, action=action) == TRANSITIONS.get((state, action))


def test_each_target_is_reached_by_one_action_at_most():
    for state in STATES:
        targets = [move.to for move in states.allowed_moves(state)]
        assert len(targets) == len(set(targets)), state


def test_the_workflow_reaches_published_only_through_approval():
    assert {state for (state, _), to in TRANSITIONS.items() if to == "published"} == {"approved"}
    assert states.DIRECT_PUBLISH_FROM == {"draft", "in_review"}


def test_no_move_stays_in_place():
    assert all(state != to for (state, _), to in TRANSITIONS.items())


@given(st.lists(st.sampled_from(ACTIONS), max_size=30))
def test_any_sequence_of_actions_keeps_a_known_state(actions):
    state = "draft"
    for action in actions:
        target = states.next_state(state, action=action)
        if target is None:
            with pytest.raises(IllegalMove):
                states.move(state, action=action)
        else:
            state = target
        assert state in STATES


def test_naming_both_or_neither_is_a_programming_error():
    with pytest.raises(ValueError):
        states.next_state("draft")
    with pytest.raises(ValueError):
        states.next_state("draft", action="submit", to="in_review")
