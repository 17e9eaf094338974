"""The escrow state machine (DESIGN.md), as a table: {(state, action): next state}."""

from __future__ import annotations

from core.errors import InvalidState

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
    return [action for (source, action) in TRANSITIONS if source == state]


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidState(
            f"An escrow in state {state!r} cannot {action}.",
            details={"state": state, "action": action, "allowed": allowed_actions(state)},
        ) from None
