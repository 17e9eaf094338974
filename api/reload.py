"""Signed operator reloads: verify the Ed25519 envelope, refuse replays, swap the live config.

The signature proves which operator key issued the change; the nonce, remembered in Redis until
the envelope expires, makes each envelope usable once; the swap reaches every API process
through the control channel (api/control.py); the audit event records who changed what.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from api.http import validation_details
from core import audit, control
from core.db import after_commit
from core.errors import AppError, InvalidInput
from core.settings import ReadinessPolicy, Settings
from core.signing import VerifiedPayload, nonce_ttl, verify_envelope

NONCE_PREFIX = "virtuoz:operator-nonce:"
ReloadKind = Literal["readiness_policy", "i18n"]


class ReplayedPayload(AppError):
    status, code, message = 403, "signed_payload_replayed", "This signed payload was already used."


class ReadinessPolicyPayload(BaseModel):
    policy: ReadinessPolicy


class LocaleBundlesPayload(BaseModel):
    bundles: dict[str, dict[str, str]] = Field(min_length=1, description="locale → {message key → text}")


PAYLOADS: dict[str, type[BaseModel]] = {"readiness_policy": ReadinessPolicyPayload, "i18n": LocaleBundlesPayload}


async def apply_signed_reload(session: AsyncSession, redis: Redis, settings: Settings, kind: ReloadKind,
                              envelope: dict[str, Any]) -> VerifiedPayload:
    verified = verify_envelope(envelope, settings.operator_public_keys)
    try:
        content = PAYLOADS[kind].model_validate(verified.payload)
    except ValidationError as error:
        raise InvalidInput("The signed payload does not describe this reload.", details=validation_details(error)) from None
    # SET NX: the first request with this nonce wins, on every API process at once.
    if not await redis.set(NONCE_PREFIX + verified.nonce, verified.key_id, nx=True, ex=nonce_ttl(verified)):
        raise ReplayedPayload()
    if isinstance(content, ReadinessPolicyPayload):
        # Live only once the audit event has committed: no unrecorded change, ever.
        after_commit(session, control.store_readiness_policy, redis, content.policy)
        summary: dict[str, Any] = {"policy": content.policy.model_dump()}
    else:
        after_commit(session, control.store_locale_bundles, redis, content.bundles)
        summary = {"locales": sorted(content.bundles), "messages": sum(map(len, content.bundles.values()))}
    await audit.append(session, "operator_config", kind, f"{kind}.reloaded",
                       {**summary, "key_id": verified.key_id, "nonce": verified.nonce},
                       actor=f"operator-key:{verified.key_id}")
    return verified
