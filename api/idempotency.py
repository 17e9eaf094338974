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
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import AppError, Conflict, InvalidInput
from core.idempotency import MAX_KEY_LENGTH, IdempotencyRecord

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


async def _claim(factory: async_sessionmaker[AsyncSession], user_id: uuid.UUID, key: str,
                 print_: str) -> uuid.UUID | web.Response:
    """The claimed record's id, or the stored response to replay; raises on a clash."""
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
            return claimed
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
            return record.id
        if record.fingerprint != print_:
            raise IdempotencyKeyReused()
        if record.state == "in_flight":
            raise IdempotencyInFlight()
        assert record.response_status is not None and record.response_body is not None
        response = web.Response(status=record.response_status, body=record.response_body,
                                content_type=record.response_content_type or "application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response


def _completion(record_id: uuid.UUID, response: web.Response) -> dict[str, object]:
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
            await session.execute(
                update(IdempotencyRecord).where(IdempotencyRecord.id == claim).values(**_completion(claim, stored))
            )
        raise
    except BaseException:
        async with factory() as session, session.begin():
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == claim))
        raise
    await request_session().execute(
        update(IdempotencyRecord).where(IdempotencyRecord.id == claim).values(**_completion(claim, response))
    )
    return response
