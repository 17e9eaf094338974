"""The CMS workflow against a table written out by hand from DESIGN.md and content/README.md,
walked pair by pair: every (state, action) and every (state, target) of the hand-written lists."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from content import states
from content.states import TRANSITIONS, IllegalMove
from core.errors import InvalidState

# DESIGN.md: "CMS document: draft → in_review → approved → published → archived; rollback
# republishes an earlier version". content/README.md ("Workflow") adds the ways back to draft
# (reject, reopen) and says rollback and saving are not moves. Not derived from TRANSITIONS.
STATES = ("draft", "in_review", "approved", "published", "archived")
ACTIONS = ("submit", "approve", "reject", "reopen", "publish", "archive")
EXPECTED = {
    ("draft", "submit"): "in_review",
    ("in_review", "approve"): "approved",
    ("in_review", "reject"): "draft",
    ("approved", "reopen"): "draft",
    ("approved", "publish"): "published",
    ("published", "archive"): "archived",
    ("archived", "reopen"): "draft",
}
ACTION_PAIRS = list(itertools.product(STATES, ACTIONS))
TARGET_PAIRS = list(itertools.product(STATES, STATES))
# (state, target) → the one action that reaches it, from the hand-written table.
BY_TARGET = {(state, to): action for (state, action), to in EXPECTED.items()}


def allowed_targets(state: str) -> list[str]:
    return [to for (source, _), to in EXPECTED.items() if source == state]


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_the_module_knows_exactly_the_documented_states_and_actions() -> None:
    assert set(states.STATES) == set(STATES)
    assert set(states.ACTIONS) == set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), ACTION_PAIRS)
def test_every_state_action_pair_follows_the_table(state, action):
    assert states.next_state(state, action=action) == EXPECTED.get((state, action))
    if (state, action) in EXPECTED:
        assert states.move(state, action=action) == (action, EXPECTED[(state, action)])
    else:
        assert_refused(state, action=action)


@pytest.mark.parametrize(("state", "to"), TARGET_PAIRS)
def test_every_state_target_pair_is_allowed_exactly_when_the_table_says(state, to):
    target = states.next_state(state, to=to)
    if (state, to) in BY_TARGET:
        assert target == to
        assert states.move(state, to=to) == (BY_TARGET[(state, to)], to)
    else:
        assert target is None
        assert_refused(state, to=to)


def assert_refused(state, **requested):
    """An illegal move is a 409 naming what the state allows, and leaves the document as it was."""
    document = {"state": state}
    table_before = dict(TRANSITIONS)
    with pytest.raises(IllegalMove) as refused:
        _, document["state"] = states.move(document["state"], **requested)
    assert isinstance(refused.value, InvalidState)
    assert refused.value.status == 409 and refused.value.code == "illegal_transition"
    assert refused.value.details["state"] == state
    assert refused.value.details["requested"] == next(iter(requested.values()))
    assert sorted(refused.value.details["allowed"]) == sorted(allowed_targets(state))
    assert sorted(refused.value.details["allowed_moves"], key=str) == sorted(
        ({"action": action, "to": to} for (source, action), to in EXPECTED.items() if source == state), key=str)
    assert document == {"state": state}
    assert TRANSITIONS == table_before


def test_each_target_is_reached_by_one_action_at_most():
    for state in STATES:
        targets = [move.to for move in states.allowed_moves(state)]
        assert len(targets) == len(set(targets)), state


def test_the_workflow_reaches_published_only_through_approval():
    assert {state for (state, _), to in EXPECTED.items() if to == "published"} == {"approved"}
    # An admin's publish-with-a-note override (content/README.md "Decision"), outside the table.
    assert states.DIRECT_PUBLISH_FROM == {"draft", "in_review"}


def test_no_move_stays_in_place():
    assert all(state != to for (state, _), to in TRANSITIONS.items())


@given(st.lists(st.sampled_from(ACTIONS), max_size=30))
def test_any_sequence_of_actions_keeps_a_known_state(actions):
    state = "draft"
    for action in actions:
        target = states.next_state(state, action=action)
        assert target == EXPECTED.get((state, action))
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
