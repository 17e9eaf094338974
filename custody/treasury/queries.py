"""The operators' list of sweeps, newest first, and what they add up to under the same filters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.pagination import keyset_before, next_page
from custody.treasury.models import Sweep
from custody.treasury.states import ACTIVE, CONFIRMED

MAX_PAGE = 200


@dataclass(frozen=True)
class SweepPage:
    items: list[Sweep]
    next_cursor: str | None


@dataclass(frozen=True)
class SweepTotal:
    """Per chain and asset: how many sweeps, what was swept (confirmed), what is on its way, and the gas
    paid for top-ups (by the hot wallet) and sweeps (by the deposit addresses), in the chain's native coin."""

    chain: str
    asset: str
    sweeps: int
    swept: int  # minor units of the asset
    in_flight: int  # minor units of the asset
    topup_gas: int  # wei
    sweep_gas: int  # wei


def _filtered(query, chain: str | None, asset: str | None, state: str | None):  # type: ignore[no-untyped-def]
    if chain:
        query = query.where(Sweep.chain == chain)
    if asset:
        query = query.where(Sweep.asset == asset)
    if state:
        query = query.where(Sweep.state == state)
    return query


async def list_sweeps(session: AsyncSession, *, chain: str | None = None, asset: str | None = None,
                      state: str | None = None, limit: int = 50, cursor: str | None = None) -> SweepPage:
    limit = min(limit, MAX_PAGE)
    query = _filtered(select(Sweep), chain, asset, state).order_by(Sweep.created_at.desc(), Sweep.id.desc())
    if cursor:
        query = query.where(keyset_before(cursor, Sweep.created_at, Sweep.id))
    rows = list(await session.scalars(query.limit(limit + 1)))
    return SweepPage(*next_page(rows, limit))


async def totals(session: AsyncSession, *, chain: str | None = None, asset: str | None = None,
                 state: str | None = None) -> list[SweepTotal]:
    query = _filtered(select(
        Sweep.chain, Sweep.asset, func.count(),
        func.coalesce(func.sum(case((Sweep.state == CONFIRMED, Sweep.amount), else_=0)), 0),
        func.coalesce(func.sum(case((Sweep.state.in_(ACTIVE), Sweep.amount), else_=0)), 0),
        func.coalesce(func.sum(Sweep.topup_gas_cost), 0), func.coalesce(func.sum(Sweep.sweep_gas_cost), 0),
    ), chain, asset, state).group_by(Sweep.chain, Sweep.asset).order_by(Sweep.chain, Sweep.asset)
    return [SweepTotal(row[0], row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6]))
            for row in await session.execute(query)]
