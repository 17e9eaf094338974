"""Proof of reserves: the latest roots for anyone, and the caller's own path to one of them."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED, PUBLIC
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.reserves.schemas import ProofQuery, ReservesOut, ReservesProofOut
from custody.treasury import reserves as service

reserves = Routes(tag="wallet", scopes="wallet")


@reserves.get("/reserves/latest", access=PUBLIC, responses={200: ReservesOut}, errors={404: ("no_reserves_epoch",)})
async def latest_reserves(request: web.Request) -> ReservesOut:
    """The latest proof of reserves: per asset the Merkle sum tree's root, liabilities, on-chain reserves, ratio."""
    return ReservesOut.of(await service.latest(db_session(request)))


@reserves.get("/wallet/reserves-proof", access=AUTHENTICATED, query=ProofQuery, responses={200: ReservesProofOut},
              errors={404: ("no_reserves_epoch", "not_in_reserves_proof")})
async def reserves_proof(request: web.Request, query: ProofQuery) -> ReservesProofOut:
    """The caller's proof in the latest epoch: their leaf and its path to the published root (`virtuoz reserves
    verify` checks it)."""
    proof = await service.proof(db_session(request), current(request).user_id, query.asset)
    return ReservesProofOut.of(proof)
