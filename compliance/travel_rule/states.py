"""The Travel Rule transfer state machine (DESIGN.md), as a table: {(state, action): next state}.

``draft → sent → accepted | rejected``; ``draft | sent → expired`` (the scheduled expiry). An
outbound transfer starts in ``draft`` (editable until it is sent); an inbound one starts in
``sent``, since the counterparty sent it, and we accept or reject it. ``accepted``, ``rejected``
and ``expired`` are final: a new attempt is a new transfer, so each record keeps its own story.
"""

from __future__ import annotations

from core import states

DRAFT, SENT, ACCEPTED, REJECTED, EXPIRED = "draft", "sent", "accepted", "rejected", "expired"
STATES = (DRAFT, SENT, ACCEPTED, REJECTED, EXPIRED)
ACTIONS = ("send", "accept", "reject", "expire")
DIRECTIONS = ("outbound", "inbound")

TRANSITIONS: states.Table = {
    (DRAFT, "send"): SENT,
    (SENT, "accept"): ACCEPTED,
    (SENT, "reject"): REJECTED,
    (DRAFT, "expire"): EXPIRED,
    (SENT, "expire"): EXPIRED,
}
FINAL = frozenset({ACCEPTED, REJECTED, EXPIRED})
# Waiting for something: the expiry job looks at these.
OPEN = frozenset({DRAFT, SENT})
# States in which a transfer still stands for its withdrawal or deposit (one at a time).
LIVE = (DRAFT, SENT, ACCEPTED)
# The state a transfer is created in, by direction.
INITIAL = {"outbound": DRAFT, "inbound": SENT}


def allowed_actions(state: str) -> list[str]:
    return states.allowed_actions(TRANSITIONS, state)


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    return states.next_state(TRANSITIONS, state, action, noun="A Travel Rule transfer")
