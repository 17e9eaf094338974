"""The withdrawal state machine (DESIGN.md), as a table: {(state, action): next state}.

requested → [awaiting_travel_rule] → [pending_approval] → approved → signing → signed → broadcast →
confirmed; failed; rolled_back. A withdrawal whose beneficiary VASP must accept its Travel Rule
transfer first waits in ``awaiting_travel_rule``; accepted, it waits for operator approval in
``pending_approval``; rejected, it fails and its hold is voided. Rollback is possible only while no transaction can exist: once a sign request is
out (``signing``) the nonce is promised to the signer, and once broadcast the money may leave.

A broadcast withdrawal stuck at its nonce may be cancelled by an operator: a 0-value self-transfer
at the same nonce is signed and broadcast, and the withdrawal stays ``broadcast`` until one of the
transactions at that nonce is mined — the payment (``confirm``) or the cancel (``cancel``: failed,
the hold voided).
"""

from __future__ import annotations

from core import states

TRANSITIONS: dict[tuple[str, str], str] = {
    ("requested", "await_travel_rule"): "awaiting_travel_rule",
    ("awaiting_travel_rule", "travel_rule_accept"): "pending_approval",
    ("awaiting_travel_rule", "travel_rule_reject"): "failed",
    ("requested", "approve_partial"): "pending_approval",  # four eyes: the first of two approvals
    ("pending_approval", "approve_partial"): "pending_approval",  # after the Travel Rule, the first of two
    ("requested", "approve"): "approved",
    ("pending_approval", "approve"): "approved",
    ("approved", "request_signature"): "signing",
    ("signing", "sign"): "signed",
    ("signing", "refuse"): "failed",  # the signer refused: nothing was signed, the hold is voided
    ("signed", "broadcast"): "broadcast",
    ("broadcast", "replace"): "broadcast",  # a fee bump (or the cancel) broadcast at the same nonce
    ("broadcast", "request_cancel"): "broadcast",  # an operator asks for a cancel; the payment may still win
    ("broadcast", "cancel"): "failed",  # the cancel was mined, not the payment: the hold is voided
    ("broadcast", "confirm"): "confirmed",
    ("broadcast", "revert"): "failed",  # mined but reverted: the amount goes back, the fee pays for the gas
    ("requested", "rollback"): "rolled_back",
    ("awaiting_travel_rule", "rollback"): "rolled_back",
    ("pending_approval", "rollback"): "rolled_back",
    ("approved", "rollback"): "rolled_back",
}
STATES = ("requested", "awaiting_travel_rule", "pending_approval", "approved", "signing", "signed", "broadcast", "confirmed", "failed",
          "rolled_back")
ACTIONS = ("await_travel_rule", "travel_rule_accept", "travel_rule_reject", "approve_partial", "approve", "request_signature", "sign", "refuse", "broadcast", "replace", "request_cancel",
           "cancel", "confirm", "revert", "rollback")
FINAL = frozenset({"confirmed", "failed", "rolled_back"})
# States in which a transaction for the withdrawal may exist (signed or on its way to the signer).
TRANSACTION_STATES = frozenset({"signing", "signed", "broadcast", "confirmed"})


def allowed_actions(state: str) -> list[str]:
    return states.allowed_actions(TRANSITIONS, state)


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    return states.next_state(TRANSITIONS, state, action, noun="A withdrawal")
