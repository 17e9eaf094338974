"""The role grant state machine, as a table: {(state, action): next state}.

``pending → confirmed | expired``. One admin requests a privileged role for a user (``pending``);
another admin confirms it (``confirmed``: the user has the role from then on), or its deadline
passes first (``expired``). Both are final: asking again is a new grant, so each keeps its story.
"""

from __future__ import annotations

from core import states

PENDING, CONFIRMED, EXPIRED = "pending", "confirmed", "expired"
STATES = (PENDING, CONFIRMED, EXPIRED)
ACTIONS = ("confirm", "expire")

TRANSITIONS: states.Table = {
    (PENDING, "confirm"): CONFIRMED,
    (PENDING, "expire"): EXPIRED,
}
FINAL = frozenset({CONFIRMED, EXPIRED})


def allowed_actions(state: str) -> list[str]:
    return states.allowed_actions(TRANSITIONS, state)


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    return states.next_state(TRANSITIONS, state, action, noun="A role grant")
