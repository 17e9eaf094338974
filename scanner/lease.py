"""One active scanner per chain; the others stand by and take over when it dies or hangs.

The lease is core.lease's (a PostgreSQL advisory lock on a session that ends after ``seconds``
without a renewal), one per chain. The scanner's own connections end their transactions as
quickly (``session_limits``): a scanner frozen inside one would otherwise keep the cursor's row
locked from its successor.

A renewal that fails means the lease is lost: the scanner is stopped at once and stands by again.
The cursor only moves by compare-and-set, which covers the moment in between: two scanners never
both move it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from core import lease
from core.lease import follow, session_limits

__all__ = ["Lease", "follow", "session_limits"]


class Lease(lease.Lease):
    """The right to follow ``chain``."""

    def __init__(self, engine: AsyncEngine, chain: str, seconds: float) -> None:
        super().__init__(engine, f"scanner:{chain}", seconds, name=f"scanner {chain}", alert="scanner_lease_lost")
        self.chain = chain
