"""Deposit routes: a watcher's deposit event, verified against the chain; the caller's deposits."""

from __future__ import annotations

from aiohttp import web

from api import signatures
from api.access import AUTHENTICATED, roles_or_service_signature
from api.addresses.routes import ACTS_FOR_OTHERS
from api.deposits.schemas import DepositOut, DepositsOut, DepositsQuery, ScannerEventIn
from api.http import json_response
from api.keys import CHAINS, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from custody.deposits import ingest, queries

scanner_ingest = Routes(tag="deposits")
deposits = Routes(tag="deposits", scopes="deposits")

INGEST_ACCESS = roles_or_service_signature(*ACTS_FOR_OTHERS)


@scanner_ingest.post("/platform/crypto/scanner/ingest", access=INGEST_ACCESS, body=ScannerEventIn,
                     responses={201: DepositOut, 200: DepositOut},
                     errors={422: ("unknown_chain", "asset_not_on_chain", "invalid_log_index", "invalid_amount",
                                   "event_mismatch")})
async def ingest_scanner_event(request: web.Request, body: ScannerEventIn) -> web.Response:
    """Record a watcher's deposit event once the chain confirms it: 201 if new, 200 if already known.

    The node must show the transaction mined in that block, successful, moving that amount of that
    asset to that deposit address; otherwise 422 `event_mismatch` (audited). Idempotent per
    (chain, tx_hash, log_index). Operators and admins log in; a service signs the body instead.
    """
    actor = await signatures.caller(request, INGEST_ACCESS)
    app = request.config_dict
    ingested = await ingest.ingest(db_session(request), body.event(), chains=app[SETTINGS].chains,
                                   adapters={chain.name: chain for chain in app[CHAINS]}, actor=actor)
    return json_response(DepositOut.of(ingested.item), status=201 if ingested.created else 200)


@deposits.get("/wallet/deposits", access=AUTHENTICATED, query=DepositsQuery, responses={200: DepositsOut},
              errors={422: ("invalid_cursor",)})
async def list_deposits(request: web.Request, query: DepositsQuery) -> DepositsOut:
    """The caller's deposits with their state and confirmations, newest first (`limit` 1–100, opaque `cursor`)."""
    page = await queries.deposits_of(db_session(request), current(request).user_id, limit=query.limit,
                                     cursor=query.cursor)
    return DepositsOut(items=[DepositOut.of(item) for item in page.items], next_cursor=page.next_cursor)
