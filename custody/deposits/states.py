"""The deposit state machine as a table (DESIGN.md): ``seen → confirming → credited``; ``reorged``;
``orphaned``.

- ``seen``: recorded, nothing built on its block yet (or an ingested event not counted yet);
- ``confirming``: at least one block on top, fewer than the chain requires;
- ``credited``: the ledger credit is in force;
- ``reorged``: its block left the canonical chain (a credit in force is reversed by the worker);
- ``orphaned``: final; its key (the transaction and the log's index within it) was found again
  with another recipient, asset or amount (``supersede``). A credit in force is reversed, and the
  new content is recorded as the key's next revision, a row of its own.

``move`` is a transfer found again in another block without its old one being orphaned first
(an ingested event above the scanner's cursor, then mined elsewhere): counting starts again,
unless the credit is already in force — the transaction is on the chain either way.
"""

from __future__ import annotations

from core.errors import InvalidState
from custody.deposits.models import CONFIRMING, CREDITED, ORPHANED, REORGED, SEEN

ACTIONS = ("confirm", "credit", "orphan", "reappear", "move", "supersede")

TRANSITIONS: dict[tuple[str, str], str] = {
    (SEEN, "confirm"): CONFIRMING,
    (CONFIRMING, "confirm"): CONFIRMING,
    (SEEN, "credit"): CREDITED,
    (CONFIRMING, "credit"): CREDITED,
    (SEEN, "orphan"): REORGED,
    (CONFIRMING, "orphan"): REORGED,
    (CREDITED, "orphan"): REORGED,
    (REORGED, "reappear"): SEEN,
    (SEEN, "move"): SEEN,
    (CONFIRMING, "move"): SEEN,
    (CREDITED, "move"): CREDITED,
    (SEEN, "supersede"): ORPHANED,
    (CONFIRMING, "supersede"): ORPHANED,
    (CREDITED, "supersede"): ORPHANED,
    (REORGED, "supersede"): ORPHANED,
}

# Still waiting for confirmations: what each new block re-counts and what may be credited.
WAITING = (SEEN, CONFIRMING)
# On the canonical chain as far as we know: what a reorg can orphan.
LIVE = (SEEN, CONFIRMING, CREDITED)
# Off the chain, or no longer what the chain shows: a credit still in force here is reversed.
UNDONE = (REORGED, ORPHANED)


def transition(state: str, action: str) -> str:
    """The state after ``action``; an illegal move is a ``Conflict`` (invalid_state)."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidState(f"A {state} deposit cannot {action}.", details={"state": state, "action": action}) from None

