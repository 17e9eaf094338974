"""The KYC state machine (DESIGN.md): ``unverified → pending → approved | rejected | needs_info``.

A table, so a test can walk every (state, action) pair. ``needs_info`` goes back to ``pending``
when the user submits again. ``approved`` and ``rejected`` are final for the user: a rejected
applicant does not retry on their own (a compliance officer would open a new review).
"""

from __future__ import annotations

from core.errors import InvalidState

STATES = ("unverified", "pending", "approved", "rejected", "needs_info")
ACTIONS = ("submit", "approve", "reject", "request_info")

TRANSITIONS: dict[tuple[str, str], str] = {
    ("unverified", "submit"): "pending",
    ("needs_info", "submit"): "pending",
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("pending", "request_info"): "needs_info",
}

# The decision body's words → the machine's actions.
DECISIONS = {"approved": "approve", "rejected": "reject", "needs_info": "request_info"}


def transition(state: str, action: str) -> str:
    """The next state, or ``InvalidState`` (409) naming the state and the refused action."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidState(f"A KYC case in state {state!r} cannot {action.replace('_', ' ')}.",
                           code="kyc_invalid_state", details={"state": state, "action": action}) from None
