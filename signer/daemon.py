"""`virtuoz signer`: the signing daemon. Redis in, Redis out; never PostgreSQL, never the platform's code.

The signer may import only ``core`` (import-linter), so it cannot declare its actor through
``jobs.registry``: it builds a small Dramatiq broker of its own and one actor, and answers by
*naming* the custody worker's actors in a plain ``dramatiq.Message``.

Message contract (``core.sign_requests``, documented there and in ``custody.withdrawals.actors``):

- consumes ``signer.sign_withdrawal(withdrawal_id, unsigned_tx, authorization)`` on queue ``signer``, and
  ``signer.sign_cold_transfer(transfer_id, unsigned_tx, authorization)`` (hot → cold, ``core.sign_requests``);
- answers ``custody.withdrawal_signed(withdrawal_id, request_digest, raw_tx, tx_hash, signature)`` or
  ``custody.withdrawal_refused(withdrawal_id, request_digest, reason, message, signature)`` on queue
  ``custody``, ``signature`` by the signer key over the reply (``core.sign_requests.sign_reply``);
- consumes ``signer.sign_sweep(request_id, kind, index, unsigned_tx, authorization)`` (sweeps and gas
  top-ups, ``core.sweep_requests``, ``signer.sweeps``) and answers ``treasury.sweep_signed`` /
  ``treasury.sweep_refused`` on queue ``treasury``, signed likewise.

The reply is sent only after the journal has committed (fsync). A crash (even SIGKILL) between
the two leaves the request unacknowledged: it is delivered again, or the custody worker asks
again, and the journal answers with the same raw transaction. ``SIGNER_THREADS`` requests are
handled at once, so one fsync covers the signatures of several (group commit, ``signer.journal``).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import dramatiq
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Retries, ShutdownNotifications
from prometheus_client import Gauge

from core.metrics import serve_metrics
from core.sanctions import SanctionsList
from core.settings import Settings, SettingsError, is_redis_url
from core.sign_requests import (
    CUSTODY_QUEUE,
    REFUSED_ACTOR,
    REFUSED_REPLY,
    SIGN_ACTOR,
    SIGN_COLD_TRANSFER_ACTOR,
    SIGNED_ACTOR,
    SIGNED_REPLY,
    SIGNER_QUEUE,
)
from core.signing import load_public_key
from signer.answers import Replies, answer, reply_message
from signer.derivation import signer_key
from signer.journal import Journal
from signer.keystore import unlock_keystore
from signer.passphrase import read_passphrase
from signer.policy import Policy
from signer.service import Refused, Signed, Signer
from signer.sweeps import SweepSigner
from signer.sweeps import declare_actor as declare_sweep_actor

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "dramatiq"  # the one jobs.broker uses: the custody worker's queues live there
# Requests handled at once. Signing is CPU work, one decision at a time under the journal's hold;
# what threads buy is the fsync: requests that arrive while one is in progress share the next
# (signer.journal, group commit), and replies go to Redis while others are signed.
SIGNER_THREADS = 8
SHUTDOWN_TIMEOUT_MS = 10_000
# A dead signer's unacknowledged messages go back to the queue after this long (Dramatiq's own
# recovery; the custody worker also re-asks after withdrawal_resend_seconds).
HEARTBEAT_TIMEOUT_MS = 15_000
# The heartbeat metric moves while the signer's threads are alive: "signer silent" alerts on its age.
HEARTBEAT_SECONDS = 1.0
HEARTBEAT = Gauge("virtuoz_signer_heartbeat_timestamp_seconds", "Set every second while the signer's consumer "
                  "and worker threads are alive (Unix time): its age is how long the signer has been silent.")
MAINTENANCE_CHANCE = 50_000  # per million commands: recover dead consumers' messages promptly


def request_public_key(settings: Settings) -> Ed25519PublicKey:
    """The custody request key's public half, inline or from its file."""
    text = settings.signer_request_public_key
    if text is None:
        path = settings.signer_request_public_key_file
        try:
            text = Path(path).read_text(encoding="ascii").strip()  # type: ignore[arg-type]
        except OSError:
            raise SettingsError(f"no custody request public key: set VIRTUOZ_SIGNER_REQUEST_PUBLIC_KEY or write {path}"
                                ) from None
    try:
        return load_public_key(text)
    except ValueError:
        raise SettingsError("the custody request public key is not base64url of 32 Ed25519 bytes") from None


def build_signer(settings: Settings, passphrase: str) -> tuple[Signer, Ed25519PrivateKey]:
    """Unlock the keystore and assemble the signer and its reply key; every configuration problem
    fails here, at start."""
    seed = unlock_keystore(settings.signer_keystore_dir, passphrase)  # type: ignore[arg-type]
    sanctions = SanctionsList(settings.signer_sanctions_list_file)
    sanctions.addresses()  # a missing or malformed list refuses to start, not to sign
    policy = Policy(settings.chains, settings.signer_limits, sanctions, fee_caps=settings.signer_fee_caps,
                    cold_wallets=settings.signer_cold_wallets)
    journal = Journal(settings.signer_journal_file)  # type: ignore[arg-type]
    return Signer(seed, settings.chains, policy, journal, request_public_key(settings)), signer_key(seed)


def create_signer_broker(broker_url: str, *, namespace: str = DEFAULT_NAMESPACE) -> dramatiq.Broker:
    """The signer's channel: the platform's broker, Redis or RabbitMQ (``amqp://``)."""
    middleware = [AgeLimit(), ShutdownNotifications(), Retries(max_retries=20, min_backoff=1_000, max_backoff=30_000)]
    if not is_redis_url(broker_url):
        # Publisher confirms: a reply is sent once RabbitMQ has it; the request stays unacknowledged until then.
        return RabbitmqBroker(url=broker_url, confirm_delivery=True, middleware=middleware)
    client = redis.Redis.from_url(broker_url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)
    return RedisBroker(client=client, namespace=namespace, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
                       maintenance_chance=MAINTENANCE_CHANCE, middleware=middleware)


WITHDRAWAL_REPLIES = Replies(CUSTODY_QUEUE, signed=(SIGNED_REPLY, SIGNED_ACTOR), refused=(REFUSED_REPLY, REFUSED_ACTOR))


def reply_for(outcome: Signed | Refused, key: Ed25519PrivateKey) -> dramatiq.Message[Any]:
    """The reply to the custody worker (withdrawals and cold transfers)."""
    return reply_message(outcome, key, WITHDRAWAL_REPLIES)


def _pause_after_journal(pause_file: Path, withdrawal_id: str) -> None:
    """The test suite's window "journaled but not answered": announce it, then wait to be killed."""
    pause_file.write_text(withdrawal_id)
    threading.Event().wait()


def declare_actor(broker: dramatiq.Broker, signer: Signer, key: Ed25519PrivateKey,
                  pause_file: Path | None = None) -> None:
    pause = None if pause_file is None else (lambda request_id: _pause_after_journal(pause_file, request_id))

    def sign_withdrawal(*args: Any, **kwargs: Any) -> None:
        # Any other shape is refused as malformed (never retried: it would be refused again).
        shaped = len(args) == 3 and not kwargs
        withdrawal_id, unsigned_tx, authorization = args if shaped else (None, None, None)
        outcome = signer.handle(withdrawal_id, unsigned_tx, authorization)
        answer(broker, outcome, reply_for(outcome, key), "withdrawal", pause)

    dramatiq.actor(sign_withdrawal, broker=broker, actor_name=SIGN_ACTOR, queue_name=SIGNER_QUEUE)

    def sign_cold_transfer(*args: Any, **kwargs: Any) -> None:
        # Hot → cold: the same shape and the same answers as a withdrawal's, its own checks (Signer).
        shaped = len(args) == 3 and not kwargs
        transfer_id, unsigned_tx, authorization = args if shaped else (None, None, None)
        outcome = signer.handle_cold_transfer(transfer_id, unsigned_tx, authorization)
        answer(broker, outcome, reply_for(outcome, key), "cold transfer")

    dramatiq.actor(sign_cold_transfer, broker=broker, actor_name=SIGN_COLD_TRANSFER_ACTOR, queue_name=SIGNER_QUEUE)


def _consuming(worker: dramatiq.Worker) -> bool:
    """Every consumer and worker thread alive: the signer still takes requests off its queue."""
    threads = [*worker.consumers.values(), *worker.workers]
    return bool(threads) and all(thread.is_alive() for thread in threads)


def run_signer(settings: Settings, *, namespace: str = DEFAULT_NAMESPACE) -> int:
    """Run until SIGTERM/SIGINT; the passphrase from its file (devnet and test: the variable)."""
    settings.check("signer")
    signer, key = build_signer(settings, read_passphrase(settings))
    broker = create_signer_broker(settings.require_broker_url(), namespace=namespace)
    declare_actor(broker, signer, key, settings.signer_test_pause_file)
    # Sweeps and gas top-ups (core.sweep_requests): the same keys, journal and fee caps, their own rules.
    pause_file = settings.signer_test_pause_file
    declare_sweep_actor(broker, SweepSigner(signer, request_public_key(settings),
                                            token_gas_limit=settings.withdrawal_gas_limit_token), key,
                        None if pause_file is None else lambda request_id: _pause_after_journal(pause_file, request_id))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    worker = dramatiq.Worker(broker, queues={SIGNER_QUEUE}, worker_threads=SIGNER_THREADS)
    worker.start()
    log.info("signer running: hot wallets %s; journal %s", ", ".join(
        f"{chain.name} {signer.hot_wallet(chain.chain_id)}" for chain in settings.chains), settings.signer_journal_file)
    serve_metrics(settings, "signer")
    try:
        while not stop.wait(HEARTBEAT_SECONDS):
            if _consuming(worker):
                HEARTBEAT.set_to_current_time()
    finally:
        worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
        broker.close()
        if isinstance(broker, RedisBroker):
            broker.client.close()  # close() leaves the client's connections open
        signer.journal.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("signer stopped")
    return 0
