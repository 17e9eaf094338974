"""State machines are tables ``{(state, action): next state}``; one function reads them all."""

from __future__ import annotations

from core.errors import InvalidState

Table = dict[tuple[str, str], str]


def allowed_actions(table: Table, state: str) -> list[str]:
    return [action for (source, action) in table if source == state]


def next_state(table: Table, state: str, action: str, *, noun: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows (and changing nothing)."""
    try:
        return table[(state, action)]
    except KeyError:
        raise InvalidState(
            f"{noun} in state {state!r} cannot {action.replace('_', ' ')}.",
            details={"state": state, "action": action, "allowed": allowed_actions(table, state)},
        ) from None
