"""The signer's replies are believed only with the signer key's signature over exactly what they say.

Anyone who can write to Redis can put a message on the custody queue. A believed refusal voids the
hold and gives the nonce back; a forged one, while the real signer signs the same withdrawal, would
pay twice. So each reply (``core.sign_requests``) carries the signer key's signature over its kind,
the withdrawal, the request it answers and its fields, checked against the public key of this
process's own configuration (``signer_public_key_file``), never one a message or the signer hands
over. Anything else changes nothing: it is logged as an ``ALERT``, counted, and audited on the
withdrawal it names (if that withdrawal exists).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.settings import Settings
from core.sign_requests import load_signer_public_key, reply_verifies
from custody.withdrawals import metrics
from custody.withdrawals.models import Withdrawal

log = logging.getLogger(__name__)

MAX_LOGGED = 80  # a forged message chooses its strings: keep only so much of them


async def verified(session: AsyncSession, settings: Settings, kind: str, withdrawal_id: object, digest: object,
                   fields: Sequence[object], signature: object) -> bool:
    """True when the reply is the signer's; otherwise alert (log, metric, audit) and return False."""
    assert settings.signer_public_key_file is not None  # filled in by Settings
    if reply_verifies(load_signer_public_key(settings.signer_public_key_file), kind, withdrawal_id, digest, fields,
                      signature):
        return True
    metrics.UNVERIFIED_REPLIES.labels(kind).inc()
    label = str(withdrawal_id)[:MAX_LOGGED]
    log.error("ALERT: a %s reply about withdrawal %r is not signed by the signer key (%s); ignored", kind, label,
              "no signature" if signature is None else "the signature does not verify")
    withdrawal = await _named(session, withdrawal_id)
    if withdrawal is not None:
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.unverified_reply",
                           {"kind": kind, "request_digest": str(digest)[:MAX_LOGGED],
                            "signature": "missing" if signature is None else "invalid"}, actor="custody")
    return False


async def _named(session: AsyncSession, withdrawal_id: object) -> Withdrawal | None:
    try:
        key = uuid.UUID(str(withdrawal_id))
    except ValueError:
        return None
    return await session.get(Withdrawal, key)
