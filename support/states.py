"""The ticket state machine, as a table: ``{(state, action): next_state}``.

    open → in_progress → pending_customer → resolved → closed

Staff move a ticket explicitly (``POST .../transition {"to"}``): the move names a target state and
the table names the one staff action that reaches it from the current state. Replies move it
implicitly: a customer's reply brings a ticket waiting on them (``pending_customer``) back to
``in_progress`` and reopens a ``resolved`` one; a staff member's first reply takes an ``open``
ticket ``in_progress``. ``closed`` is final: the customer opens a new ticket.

The SLA clock runs only in ``CLOCK_RUNS_IN`` (see ``sla.py``).
"""

from __future__ import annotations

from typing import Literal

from core.errors import InvalidState

State = Literal["open", "in_progress", "pending_customer", "resolved", "closed"]
Action = Literal["start", "await_customer", "resolve", "reopen", "close", "customer_reply", "staff_reply"]

STATES: tuple[State, ...] = ("open", "in_progress", "pending_customer", "resolved", "closed")
ACTIONS: tuple[Action, ...] = ("start", "await_customer", "resolve", "reopen", "close", "customer_reply", "staff_reply")

TRANSITIONS: dict[tuple[State, Action], State] = {
    # explicit staff moves
    ("open", "start"): "in_progress",
    ("open", "await_customer"): "pending_customer",
    ("open", "resolve"): "resolved",
    ("in_progress", "await_customer"): "pending_customer",
    ("in_progress", "resolve"): "resolved",
    ("pending_customer", "start"): "in_progress",  # staff resume without waiting for the customer
    ("pending_customer", "resolve"): "resolved",
    ("resolved", "reopen"): "in_progress",
    ("resolved", "close"): "closed",
    # a customer's reply
    ("open", "customer_reply"): "open",
    ("in_progress", "customer_reply"): "in_progress",
    ("pending_customer", "customer_reply"): "in_progress",
    ("resolved", "customer_reply"): "in_progress",  # "it is not fixed": reopens
    # a staff member's public reply
    ("open", "staff_reply"): "in_progress",
    ("in_progress", "staff_reply"): "in_progress",
    ("pending_customer", "staff_reply"): "pending_customer",
    ("resolved", "staff_reply"): "resolved",
}

# The actions `POST .../transition` may take; replies happen only through messages.
STAFF_MOVES: frozenset[Action] = frozenset({"start", "await_customer", "resolve", "reopen", "close"})

CLOCK_RUNS_IN: frozenset[State] = frozenset({"open", "in_progress"})


class IllegalTransition(InvalidState):
    code, message = "invalid_transition", "This ticket cannot make that move from its current state."


def transition(state: str, action: str) -> State:
    """The state ``action`` leads to from ``state``; 409 naming the allowed moves otherwise."""
    target = TRANSITIONS.get((state, action))  # type: ignore[call-overload]
    if target is None:
        raise IllegalTransition(
            f"A ticket in state {state!r} does not allow {action!r}.",
            details={"state": state, "action": action, "allowed_moves": allowed_moves(state)},
        )
    return target


def allowed_moves(state: str) -> list[str]:
    """The target states a staff move can reach from ``state``."""
    return sorted({target for (source, action), target in TRANSITIONS.items()
                   if source == state and action in STAFF_MOVES})


def move_to(state: str, target: str) -> Action:
    """The staff action that takes a ticket from ``state`` to ``target``; 409 if there is none."""
    for (source, action), reached in TRANSITIONS.items():
        if source == state and action in STAFF_MOVES and reached == target:
            return action
    raise IllegalTransition(
        f"A ticket in state {state!r} cannot move to {target!r}.",
        details={"from": state, "to": target, "allowed_moves": allowed_moves(state)},
    )
