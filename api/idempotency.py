"""Idempotency-Key for financial POSTs (draft-ietf-httpapi-idempotency-key-header).

Keys are scoped per user. The first request claims the key (committed at once, so concurrent
twins see it) with a fingerprint of method, path and body; its response — errors included — is
stored for 24 h:

- same key, same body, finished → the stored response, byte for byte (``Idempotent-Replayed: true``);
- same key, other body → 422 ``idempotency_key_reused``;
- same key while the first is still running → 409 ``idempotency_in_flight``.

A success is stored in the request's own transaction, so the effect and its stored response
commit together. A refusal (4xx) is stored in a transaction of its own, since the request's is
rolled back. An unexpected failure (5xx) releases the key: retrying it is what the client should do.

A claim has a lease (``IN_FLIGHT_LEASE``): a process that crashed mid-request leaves a claim no
response will ever complete, and a retry after the lease takes it over. A request that is merely
slow may still be running then, so every claim carries a version, bumped by each take-over, and
every write of a completion (success, refusal, release) is fenced by it: ``UPDATE … WHERE
claim_version = <ours>``. A request that lost its claim finds another version, writes nothing,
and — a success — raises 409 ``idempotency_in_flight`` inside its own transaction, which then
rolls its effect back. The success's fence runs in the same transaction as the effect and locks
the record until commit, so of two runs at most one commits, however long either takes.

Why a fence rather than extending the lease while the request runs: a lease kept alive by a
heartbeat only guesses that the first request is still able to commit; an event loop stalled
longer than the lease, or a heartbeat write that fails while the request's own transaction still
commits, lets both run. The fence makes the commit itself conditional, whatever the timing.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import AppError, Conflict, InvalidInput
from core.idempotency import MAX_KEY_LENGTH, IdempotencyRecord

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
# A claim older than this with no response is a crashed request: a retry may take it over.
IN_FLIGHT_LEASE = timedelta(seconds=60)


class IdempotencyKeyReused(InvalidInput):
    code, message = "idempotency_key_reused", "This Idempotency-Key was used with a different request."


class IdempotencyInFlight(Conflict):
    code, message = "idempotency_in_flight", "A request with this Idempotency-Key is still being processed."


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


def read_key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
        raise InvalidInput(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters.",
                           code="invalid_idempotency_key")
    return key


@dataclass(frozen=True)
class Claim:
    """A record this request holds, at the version it claimed it with."""

    record_id: uuid.UUID
    version: int

    def fence(self) -> Any:
        return (IdempotencyRecord.id == self.record_id) & (IdempotencyRecord.claim_version == self.version)


async def _claim(factory: async_sessionmaker[AsyncSession], user_id: uuid.UUID, key: str,
                 print_: str) -> Claim | web.Response:
    """The claim, or the stored response to replay; raises on a clash."""
    async with factory() as session, session.begin():
        now = await session.scalar(select(func.now()))
        record_id = uuid.uuid4()
        claimed = await session.scalar(
            insert(IdempotencyRecord)
            .values(id=record_id, user_id=user_id, key=key, fingerprint=print_, state="in_flight",
                    lease_until=now + IN_FLIGHT_LEASE, expires_at=now + RETENTION)
            .on_conflict_do_nothing(constraint="uq_idempotency_records_user_key")
            .returning(IdempotencyRecord.id)
        )
        if claimed is not None:
            return Claim(claimed, 1)
        record = await session.scalar(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
            .with_for_update()
        )
        assert record is not None
        expired = record.expires_at < now
        stale = record.state == "in_flight" and record.lease_until < now
        if expired or stale:
            record.fingerprint, record.state = print_, "in_flight"
            record.lease_until, record.expires_at = now + IN_FLIGHT_LEASE, now + RETENTION
            record.response_status = record.response_body = record.response_content_type = None
            record.claim_version += 1  # whoever held it before can no longer complete it
            return Claim(record.id, record.claim_version)
        if record.fingerprint != print_:
            raise IdempotencyKeyReused()
        if record.state == "in_flight":
            raise IdempotencyInFlight()
        assert record.response_status is not None and record.response_body is not None
        response = web.Response(status=record.response_status, body=record.response_body,
                                content_type=record.response_content_type or "application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response


def _completion(response: web.Response) -> dict[str, object]:
    return {
        "state": "completed",
        "response_status": response.status,
        "response_content_type": response.content_type,
        "response_body": bytes(response.body or b""),  # type: ignore[arg-type]
    }


async def run_idempotently(
    request: web.Request,
    factory: async_sessionmaker[AsyncSession],
    request_session: Callable[[], AsyncSession],
    user_id: uuid.UUID,
    key: str,
    run: Callable[[], Awaitable[web.Response]],
    render_error: Callable[[AppError], web.Response],
) -> web.Response:
    body = await request.read()
    claim = await _claim(factory, user_id, key, fingerprint(request.method, request.path, body))
    if isinstance(claim, web.Response):
        return claim
    try:
        response = await run()
    except AppError as error:
        stored = render_error(error)
        async with factory() as session, session.begin():
            # Fenced: a retry that took the claim over owns the record now.
            stored_it = await session.execute(
                update(IdempotencyRecord).where(claim.fence()).values(**_completion(stored)))
        if stored_it.rowcount != 1 and error.keep_changes:  # type: ignore[attr-defined]
            # A refusal that commits what it wrote (an audit record) would commit it beside the retry's.
            raise IdempotencyInFlight(details={"reason": "claim_taken_over"}) from error
        raise
    except BaseException:
        async with factory() as session, session.begin():
            await session.execute(delete(IdempotencyRecord).where(claim.fence()))
        raise
    completed = await request_session().execute(
        update(IdempotencyRecord).where(claim.fence()).values(**_completion(response)))
    if completed.rowcount != 1:  # type: ignore[attr-defined]
        # A retry took the stale claim over and runs (or ran) the request itself: this run's effect
        # must not commit beside it. Raised inside the request's transaction, which rolls it back.
        log.warning("idempotent %s %s outlived its claim (key taken over by a retry): rolled back",
                    request.method, request.path)
        raise IdempotencyInFlight(details={"reason": "claim_taken_over"})
    return response
