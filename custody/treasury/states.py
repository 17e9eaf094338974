"""The sweep state machine, as a table: {(state, action): next state}.

A sweep moves what one deposit address holds of one asset to the chain's hot wallet.

- ``pending_topup``: a token sweep whose address lacks the native coin for its gas; the top-up
  from the hot wallet is being asked for, signed or sent (a refused one is asked again later);
- ``topup_sent``: the top-up is broadcast; the sweep waits for its confirmations;
- ``ready``: the gas is there (a native sweep starts here); the sweep transaction may be asked for;
- ``sweeping``: the sweep transaction is asked for, signed, broadcast, followed to its confirmations;
- ``confirmed``: mined with the chain's confirmations; ``failed``: refused by the signer, or mined
  but reverted (its gas is spent) — final; the address is swept again by a new sweep.

``retry_topup``: a top-up mined but reverted leaves the address short again (it never happens to a
plain transfer, but a receipt is believed, not assumed). ``need_topup``: an address found short of
gas just before its sweep is asked for (its gas spent since it was planned) gets a top-up for what
is missing, never a second one for what it already holds; ``gas_present``: an address found holding
its gas when a top-up was about to be asked for needs none. ``ready`` fails when the asset is no
longer at the address (nothing was asked of the signer yet).
"""

from __future__ import annotations

from core import states

PENDING_TOPUP, TOPUP_SENT, READY, SWEEPING, CONFIRMED, FAILED = (
    "pending_topup", "topup_sent", "ready", "sweeping", "confirmed", "failed")

TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING_TOPUP, "send_topup"): TOPUP_SENT,
    (PENDING_TOPUP, "gas_present"): READY,
    (TOPUP_SENT, "topup_confirmed"): READY,
    (TOPUP_SENT, "retry_topup"): PENDING_TOPUP,
    (READY, "need_topup"): PENDING_TOPUP,
    (READY, "send_sweep"): SWEEPING,
    (READY, "fail"): FAILED,
    (SWEEPING, "confirm"): CONFIRMED,
    (SWEEPING, "fail"): FAILED,
}
STATES = (PENDING_TOPUP, TOPUP_SENT, READY, SWEEPING, CONFIRMED, FAILED)
ACTIONS = ("send_topup", "gas_present", "topup_confirmed", "retry_topup", "need_topup", "send_sweep", "confirm",
           "fail")
FINAL = frozenset({CONFIRMED, FAILED})
ACTIVE = tuple(state for state in STATES if state not in FINAL)


def allowed_actions(state: str) -> list[str]:
    return states.allowed_actions(TRANSITIONS, state)


def transition(state: str, action: str) -> str:
    """The next state, or a 409 ``invalid_state`` naming what this state allows."""
    return states.next_state(TRANSITIONS, state, action, noun="A sweep")
