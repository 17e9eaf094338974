"""Treasury routes (operators and admins): one table, ``treasury``, for every `/admin/treasury/...` route —
the sweeps, the hot and cold wallets, refill requests of the hot wallets."""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.http import path_uuid
from api.keys import SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.reserves.schemas import ReservesOut
from api.schemas import Empty
from api.treasury.schemas import (
    RefillListOut,
    RefillListQuery,
    RefillOut,
    RefillSubmitIn,
    SweepListOut,
    SweepListQuery,
    WalletsOut,
)
from custody import ledger
from custody.treasury import queries as sweep_queries
from custody.treasury import refills, reserves
from custody.treasury import wallets as wallet_views

treasury = Routes(tag="admin")  # the Swagger tags are a fixed list (api.openapi.TAGS)

TREASURERS = ("operator", "admin")
TREASURY_ACCESS = roles(*TREASURERS)


@treasury.post("/admin/treasury/reserves", access=roles("admin"), body=Empty, responses={201: ReservesOut},
               errors={409: ("negative_liability", "xpub_file_refused", "chain_refused"), 503: ("chain_unavailable",)})
async def publish_reserves(request: web.Request, body: Empty) -> ReservesOut:
    """Publish a proof-of-reserves epoch now (the schedule does it daily): the ledger snapshot's trees and the
    chains' reserves at one block each. Refused (409, alerted) on a negative balance or an unverifiable xpub file."""
    epoch = await reserves.build_epoch(db_session(request), request.config_dict[SETTINGS],
                                       actor=str(current(request).user_id))
    assert epoch is not None  # only a scheduled slot is ever found already built
    return ReservesOut.of(epoch)


# --- hot and cold wallets, refills (custody.treasury.wallets, refills) ----------------------------

@treasury.get("/admin/treasury/wallets", access=TREASURY_ACCESS, responses={200: WalletsOut})
async def treasury_wallets(request: web.Request) -> WalletsOut:
    """Per asset, the customers' liabilities (available + held) against the wallets on chain, and per chain
    the hot wallet, the cold wallet (watch-only) and the assigned deposit addresses at one block each.

    A chain whose node does not answer is named with its `error` and left out of the sums (`complete` is
    false then, and also when a chain has more deposit addresses than one view reads)."""
    view = await wallet_views.overview(db_session(request), request.config_dict[SETTINGS])
    return WalletsOut.of(view)


@treasury.get("/admin/treasury/refills", access=TREASURY_ACCESS, query=RefillListQuery,
              responses={200: RefillListOut})
async def list_refills(request: web.Request, query: RefillListQuery) -> RefillListOut:
    """Refill requests of the hot wallets, newest first: each carries the unsigned transaction from the cold
    wallet the cold custodian signs offline (chain id, the cold wallet's next nonce, the fee quote)."""
    session = db_session(request)
    rows, next_cursor = await refills.page(session, limit=query.limit, cursor=query.cursor, state=query.state)
    units = await ledger.currencies(session)
    return RefillListOut(items=[RefillOut.of(row, units[row.asset]) for row in rows], next_cursor=next_cursor)


@treasury.post("/admin/treasury/refills/{refill_id}/submit", access=TREASURY_ACCESS, body=RefillSubmitIn,
               responses={200: RefillOut}, idempotent=True,
               errors={404: ("refill_not_found",), 409: ("refill_already_submitted", "refill_expired"),
                       422: ("refill_transaction_mismatch", "malformed_transaction", "refill_broadcast_rejected")})
async def submit_refill(request: web.Request, body: RefillSubmitIn) -> RefillOut:
    """Broadcast the refill the cold custodian signed offline, if it is exactly the transfer asked for.

    Refusals: refill_not_found (404); refill_already_submitted (409: a refill is submitted once),
    refill_expired (409: the cold wallet used the nonce); malformed_transaction (422: not a signed
    EIP-1559 transaction); refill_transaction_mismatch (422, `details.differences` names each field that
    differs — chain_id, sender, destination, asset_contract, amount, nonce, gas or the fees — with what
    was expected and what was signed); refill_broadcast_rejected (422: the node refused it, its reason in
    `details`)."""
    session = db_session(request)
    refill = await refills.submit(session, request.config_dict[SETTINGS],
                                  path_uuid(request, "refill_id", "refill_not_found"), body.raw_tx,
                                  current(request).user_id)
    return RefillOut.of(refill, await ledger.currency(session, refill.asset))


# --- sweeps (custody.treasury.service, pipeline, queries) ----------------------------------------

@treasury.get("/admin/treasury/sweeps", access=TREASURY_ACCESS, query=SweepListQuery, responses={200: SweepListOut},
              errors={422: ("invalid_cursor",)})
async def list_sweeps(request: web.Request, query: SweepListQuery) -> SweepListOut:
    """Sweeps of deposit addresses to the hot wallets, newest first: each with its address, asset, amount,
    top-up and sweep transactions and state, filtered by `chain`, `asset` and `state`; `totals` per chain
    and asset add up every sweep under the same filters (not only this page)."""
    session, filters = db_session(request), {"chain": query.chain, "asset": query.asset, "state": query.state}
    page = await sweep_queries.list_sweeps(session, **filters, limit=query.limit, cursor=query.cursor)
    totals = await sweep_queries.totals(session, **filters)
    natives = {chain.name: chain.native for chain in request.config_dict[SETTINGS].chains}
    return SweepListOut.of(page, totals, await ledger.currencies(session), natives)
