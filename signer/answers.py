"""How the signer answers a request: one message signed by the signer key (the requester believes
nothing else), logged, and sent once the journal holds the outcome.

Withdrawals and cold transfers answer the custody worker; sweeps and top-ups the treasury worker,
under reply kinds of their own, so a reply to one can never be passed off as the other's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter, Gauge

from core.sign_requests import sign_reply
from signer.service import Refused, Signed

log = logging.getLogger(__name__)

DECISIONS = Counter("virtuoz_signer_decisions_total", "Requests the signer answered, by kind (withdrawal, cold "
                    "transfer, sweep, topup), outcome (signed, repeated: the journal's earlier answer, refused) and "
                    "reason (a refusal's; empty otherwise).", ["kind", "outcome", "reason"])
LAST_DECISION = Gauge("virtuoz_signer_last_decision_timestamp_seconds", "When the signer last answered a "
                      "request (Unix time).")


@dataclass(frozen=True)
class Replies:
    """Where the answers to one kind of request go: the queue, and (reply kind, actor) per outcome."""

    queue: str
    signed: tuple[str, str]
    refused: tuple[str, str]


def reply_message(outcome: Signed | Refused, key: Ed25519PrivateKey, replies: Replies) -> dramatiq.Message[Any]:
    if isinstance(outcome, Signed):
        (kind, actor), fields = replies.signed, (outcome.raw_tx, outcome.tx_hash)
    else:
        (kind, actor), fields = replies.refused, (outcome.reason, outcome.message)
    signature = sign_reply(key, kind, outcome.withdrawal_id, outcome.request_digest, fields)
    return dramatiq.Message(queue_name=replies.queue, actor_name=actor,
                            args=(outcome.withdrawal_id, outcome.request_digest, *fields, signature), kwargs={},
                            options={})


def answer(broker: dramatiq.Broker, outcome: Signed | Refused, reply: dramatiq.Message[Any], what: str,
           pause: Callable[[str], None] | None = None) -> None:
    """Log the outcome, stop in the test suite's "journaled but not answered" window when asked, send the reply."""
    if isinstance(outcome, Signed):
        log.info("signed %s %s: %s%s", what, outcome.withdrawal_id, outcome.tx_hash,
                 " (repeat)" if outcome.repeated else "")
        DECISIONS.labels(what, "repeated" if outcome.repeated else "signed", "").inc()
    else:
        log.warning("refused %s %s: %s (%s)", what, outcome.withdrawal_id, outcome.reason, outcome.message)
        DECISIONS.labels(what, "refused", outcome.reason).inc()
    LAST_DECISION.set_to_current_time()
    if pause is not None and isinstance(outcome, Signed) and not outcome.repeated:
        pause(outcome.withdrawal_id)
    # Raises if Redis is down: the request is retried, and the journal answers it identically.
    broker.enqueue(reply)
