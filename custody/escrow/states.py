"""The escrow state machine (DESIGN.md), as a table: {(state, action): next state}."""

from __future__ import annotations

from core import states

TRANSITIONS: dict[tuple[str, str], str] = {
    ("created", "fund"): "funded",
    ("created", "cancel"): "cancelled",
    ("funded", "release"): "released",
    ("funded", "dispute"): "disputed",
    ("disputed", "resolve"): "resolved",
    ("disputed", "reject"): "funded",  # the dispute is rejected: back to funded, the hold untouched
}
STATES = ("created", "funded", "released", "disputed", "resolved", "cancelled")
ACTIONS = ("fund", "cancel", "release", "dispute", "resolve", "reject")


def allowed_actions(state: str) -> list[str]:
    return states.allowed_actions(TRANSITIONS, state)


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    return states.next_state(TRANSITIONS, state, action, noun="An escrow")
