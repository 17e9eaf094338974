"""The CMS workflow as a table: ``{(state, action): next_state}``.

One table serves the admin routes (``/transition``, ``/publish``), the public preview
(``/platform/cms/workflow/next-status``) and the tests, which walk every pair. A move may be named
by its action (``"submit"``) or by its target state (``"in_review"``): from any one state, each
target is reached by at most one action, so the two spellings never disagree.

Saving a draft is not a move: it creates a new version, and a new version always starts in
``draft`` (changed content is reviewed again). Rollback is not a move either: it republishes an
earlier, once-published version as a new version (service.rollback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from core.errors import InvalidState

State = Literal["draft", "in_review", "approved", "published", "archived"]
Action = Literal["submit", "approve", "reject", "reopen", "publish", "archive"]

STATES: tuple[State, ...] = get_args(State)
ACTIONS: tuple[Action, ...] = get_args(Action)

TRANSITIONS: dict[tuple[State, Action], State] = {
    ("draft", "submit"): "in_review",
    ("in_review", "approve"): "approved",
    ("in_review", "reject"): "draft",
    ("approved", "reopen"): "draft",
    ("approved", "publish"): "published",
    ("published", "archive"): "archived",
    ("archived", "reopen"): "draft",
}

# Publishing without review (an admin's override, recorded with its note in the audit event) is
# possible from these states only; it never resurrects archived or re-publishes published content.
DIRECT_PUBLISH_FROM: frozenset[State] = frozenset({"draft", "in_review"})


@dataclass(frozen=True)
class Move:
    action: Action
    to: State


def allowed_moves(state: State) -> list[Move]:
    return [Move(action, to) for (source, action), to in TRANSITIONS.items() if source == state]


def _action_to(state: State, to: State) -> Action | None:
    return next((move.action for move in allowed_moves(state) if move.to == to), None)


def next_state(state: State, *, action: Action | None = None, to: State | None = None) -> State | None:
    """The state ``action`` (or the move to ``to``) leads to from ``state``; None when not allowed."""
    if (action is None) == (to is None):
        raise ValueError("name either the action or the target state")
    if to is not None:
        action = _action_to(state, to)
        if action is None:
            return None
    return TRANSITIONS.get((state, action))  # type: ignore[arg-type]


def move(state: State, *, action: Action | None = None, to: State | None = None) -> tuple[Action, State]:
    """The (action, next state) of a legal move; an illegal one is a 409 naming the allowed moves."""
    target = next_state(state, action=action, to=to)
    if target is None:
        raise IllegalMove(state, action or to)  # type: ignore[arg-type]
    return action or _action_to(state, target), target  # type: ignore[return-value]


class IllegalMove(InvalidState):
    code = "illegal_transition"

    def __init__(self, state: State, requested: str) -> None:
        moves = allowed_moves(state)
        super().__init__(
            f"A document in state {state!r} cannot move to {requested!r}.",
            details={
                "state": state,
                "requested": requested,
                "allowed": [move.to for move in moves],
                "allowed_moves": [{"action": move.action, "to": move.to} for move in moves],
            },
        )
