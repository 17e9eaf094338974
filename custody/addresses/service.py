"""Allocating deposit addresses: one per (user, chain), taken from the pool the allocator fills.

Every asset of a chain (its native coin and its tokens) shares the user's one address there:
an ERC-20 transfer and an ETH payment to the same address are told apart by the scanner.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.db import advisory_lock
from core.errors import NotFound, ServiceUnavailable
from core.settings import ChainSettings, chain_named
from custody.addresses.models import DepositAddress
from custody.addresses.pool import refill_pool
from identity.models import User

__all__ = ["AddressPoolEmpty", "Allocation", "allocate", "refill_pool"]

# How long a client should wait after an empty pool: one refill by a running allocator.
POOL_RETRY_AFTER_SECONDS = 5
REFILL = jobs.name("allocator.refill")


class AddressPoolEmpty(ServiceUnavailable):
    code, message = "address_pool_empty", "No deposit address is ready on this chain yet; retry shortly."
    # Commit the (otherwise empty) transaction so its after-commit refill request is sent.
    keep_changes = True


@dataclass(frozen=True)
class Allocation:
    deposit_address: DepositAddress
    asset: str
    newly_assigned: bool


async def allocate(
    session: AsyncSession,
    user_id: uuid.UUID,
    chain: str,
    asset: str,
    *,
    chains: Sequence[ChainSettings],
    actor: uuid.UUID | None = None,
) -> Allocation:
    """The user's deposit address on ``chain`` for ``asset``: the existing one, or one from the pool.

    Raises ``InvalidInput`` (unknown_chain, asset_not_on_chain), ``NotFound`` (user_not_found) and
    ``AddressPoolEmpty`` (503, Retry-After; a refill is requested).
    """
    chain_settings = chain_named(chains, chain)
    symbol = chain_settings.asset(asset)
    if await session.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound("No such user.", code="user_not_found")

    # Serialize allocations of one (user, chain): the second waits, then finds the first's row
    # instead of taking a second pool address (the partial UNIQUE index would refuse it anyway).
    await advisory_lock(session, f"deposit_address:{user_id}:{chain_settings.name}")
    existing = await session.scalar(
        select(DepositAddress).where(DepositAddress.user_id == user_id, DepositAddress.chain == chain_settings.name)
    )
    if existing is not None:
        return Allocation(existing, symbol, newly_assigned=False)

    # SKIP LOCKED: concurrent allocations for different users each take a different free row
    # instead of queueing on the lowest index.
    free = await session.scalar(
        select(DepositAddress)
        .where(DepositAddress.chain == chain_settings.name, DepositAddress.user_id.is_(None))
        .order_by(DepositAddress.derivation_index)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    jobs.send_after_commit(session, REFILL, chain_settings.name)
    if free is None:
        raise AddressPoolEmpty(details={"chain": chain_settings.name},
                               headers={"Retry-After": str(POOL_RETRY_AFTER_SECONDS)})
    # The database's clock, never this host's: the scanner reads what was assigned since its last
    # look by that clock, and an API host running behind it would stamp addresses it never reads.
    assigned_at = await session.scalar(select(func.now()))
    free.user_id, free.assigned_at = user_id, assigned_at
    await session.flush()
    await audit.append(
        session, "user", user_id, "deposit_address.assigned",
        {"chain": free.chain, "address": free.address, "derivation_index": free.derivation_index},
        actor=actor or user_id,
    )
    return Allocation(free, symbol, newly_assigned=True)
