"""Sign requests made by other custody domains, whose answers still arrive as withdrawal replies.

The signer answers every request with ``custody.withdrawal_signed`` / ``custody.withdrawal_refused``
naming the id the request was made under (``core.sign_requests``). Withdrawals, fillers and moves of
the retired hot wallet are answered here; a domain that sits beside withdrawals and asks the signer
for transactions of its own (the treasury's hot → cold transfers) cannot be imported from here
without a cycle, so it registers a ``Requester`` and the reply actors hand it the replies for the
ids it owns. The process wiring (``cli.registry``) installs them at start, as it does the
withdrawal checks (``custody.withdrawals.policy``).
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings


class Requester(Protocol):
    name: str

    async def owns(self, session: AsyncSession, request_id: str) -> bool:
        """Whether ``request_id`` names one of this requester's sign requests."""

    async def on_signed(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, raw_tx: str,
                        tx_hash: str, signature: str | None) -> None:
        """A signed reply: verify it (``custody.withdrawals.replies``) before believing a word of it."""

    async def on_refused(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, reason: str,
                         message: str, signature: str | None) -> None:
        """A refusal: verify it before giving anything back."""

    async def holds_nonce_above(self, session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
        """Whether a live request of its own holds a nonce of ``address`` above ``nonce`` (fillers ask:
        a nonce given back below it must be filled at once, or its transaction waits for ever)."""


_installed: dict[str, Requester] = {}


def install(requester: Requester) -> None:
    """Idempotent: one requester per name (any process, any test, may load the wiring twice)."""
    _installed[requester.name] = requester


async def nonce_held_above(session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
    for requester in _installed.values():
        if await requester.holds_nonce_above(session, chain, address, nonce):
            return True
    return False


async def owner_of(session: AsyncSession, request_id: str) -> Requester | None:
    for requester in _installed.values():
        if await requester.owns(session, request_id):
            return requester
    return None
