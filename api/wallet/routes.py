"""The caller's balances and the movements of their available money."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.wallet.schemas import (
    ActivityItemOut,
    ActivityOut,
    ActivityQuery,
    BalanceOut,
    BalancesOut,
)
from custody import ledger

wallet = Routes(tag="wallet", scopes="wallet")


@wallet.get("/wallet/balances", access=AUTHENTICATED, responses={200: BalancesOut})
async def balances(request: web.Request) -> BalancesOut:
    """Balances by currency: every currency the caller holds or has held, and USD always."""
    rows = await ledger.balances(db_session(request), current(request).user_id)
    return BalancesOut(balances=[BalanceOut.of(row) for row in rows])


@wallet.get("/wallet/activity", access=AUTHENTICATED, query=ActivityQuery, responses={200: ActivityOut},
            errors={422: ("unknown_currency", "invalid_cursor")})
async def activity(request: web.Request, query: ActivityQuery) -> ActivityOut:
    """Ledger activity on the caller's available balances, newest first (`limit` 1–100, opaque `cursor`)."""
    page = await ledger.activity(db_session(request), current(request).user_id, currency=query.currency,
                                 limit=query.limit, cursor=query.cursor)
    return ActivityOut(items=[ActivityItemOut.of(item) for item in page.items], next_cursor=page.next_cursor)

