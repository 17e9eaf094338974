"""Receipts for the batches being read, asked for together.

Each batch of blocks with transfers to deposit addresses needs their receipts (the status of a
native transfer, a token log's index within its transaction). Asked for batch by batch, a
catch-up sends as many receipt requests as batches: each a round trip, and each counted by a
provider's rate limit. Here the first batch to want receipts asks at once; those that want some
while that request is at the node wait for it to answer and are asked for together in the next
one. So nobody waits longer than one request for its turn, and busy catch-ups send fewer requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from custody.chains import Chain, Receipt


class ReceiptReader:
    """One reader per catch-up; ``close`` when it ends (a request still in flight is cancelled)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._waiting: list[tuple[Sequence[str], asyncio.Future[list[Receipt | None]]]] = []
        self._asking: asyncio.Task[None] | None = None

    async def receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        """The receipts of ``tx_hashes``, in order (None: the node has none)."""
        answer: asyncio.Future[list[Receipt | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append((tx_hashes, answer))
        if self._asking is None or self._asking.done():
            self._asking = asyncio.create_task(self._ask())
        return await answer

    async def _ask(self) -> None:
        while self._waiting:
            wanted, self._waiting = self._waiting, []
            tx_hashes = list(dict.fromkeys(tx_hash for hashes, _ in wanted for tx_hash in hashes))
            try:
                found = dict(zip(tx_hashes, await self.chain.receipts(tx_hashes), strict=True))
            except asyncio.CancelledError:
                for _, answer in wanted:
                    answer.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - each batch waiting for this request fails with it
                for _, answer in wanted:
                    if not answer.done():
                        answer.set_exception(error)
                continue
            for hashes, answer in wanted:
                if not answer.done():  # its batch may have been cancelled meanwhile
                    answer.set_result([found[tx_hash] for tx_hash in hashes])

    async def close(self) -> None:
        if self._asking is not None and not self._asking.done():
            self._asking.cancel()
            await asyncio.gather(self._asking, return_exceptions=True)
        for _, answer in self._waiting:
            answer.cancel()
        self._waiting = []
