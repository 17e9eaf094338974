"""Factories: the users, money, withdrawals and escrows a test needs, made in one place.

Plain async functions taking what they need (a session factory, a test client), never fixtures:
the fixtures stay in the conftest.py files. The database is shared by every test of a pytest
worker and never cleaned, so every factory makes fresh rows (fresh ids, unique emails) and a test
asserts only about its own.

Two kinds: rows put straight in the tables (fast, no password hashing, no audit event: what
foreign keys and races need), and users registered and logged in through the real routes.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyotp
import redis.asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.keys import SESSIONS
from content.models import EmailDelivery
from content.seed import seed_content
from core.db import create_engine, session_factory, unit_of_work
from custody import ledger, onboarding
from custody.withdrawals.models import Withdrawal
from identity.models import User
from jobs.broker import queue_depths
from jobs.scheduler import SCHEDULE

Sessions = async_sessionmaker[AsyncSession]

API = "/api/v1"
PASSWORD = "Correct-Horse-Battery-9"
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # Anvil's dev account 1, valid EIP-55
ETH = 10**18


def unique_email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


# --- rows straight in the tables ------------------------------------------------------------------

async def make_users(sessions: Sessions, count: int, *, tag: str = "user", display_name: str = "Test user",
                     email: str | None = None) -> list[uuid.UUID]:
    """Bare users rows (no password policy, no audit event, no welcome email), in one unit of work: races
    need many, quickly. ``email`` names the one user of a count of 1."""
    assert email is None or count == 1, "one email, one user"
    users = [User(id=uuid.uuid4(), email=email or unique_email(tag), display_name=display_name, password_hash="-")
             for _ in range(count)]
    async with unit_of_work(sessions) as session:
        session.add_all(users)
    return [user.id for user in users]


async def make_user(sessions: Sessions, *, tag: str = "user", display_name: str = "Test user",
                    email: str | None = None) -> uuid.UUID:
    """A bare users row: what the ledger's, a deposit's or a withdrawal's foreign keys need."""
    [user_id] = await make_users(sessions, 1, tag=tag, display_name=display_name, email=email)
    return user_id


async def credit_user(sessions: Sessions, user_id: uuid.UUID, currency: str, amount: int, *,
                      source: str = "chain_deposits", type: str = "deposit", **options: Any) -> ledger.Transfer:
    """Credit ``amount`` minor units to the user from the system account ``source`` (an on-chain deposit
    by default), in a committed unit of work; ``options`` go to ``ledger.move`` (tx_hash, reference_kind…)."""
    async with unit_of_work(sessions) as session:
        return await ledger.move(session, reference=f"test:{uuid.uuid4()}", type=type,
                                 source=ledger.AccountRef.system(source), destination=ledger.AccountRef.user(user_id),
                                 currency=currency, amount=amount, **options)


async def make_funded_user(sessions: Sessions, credit: str = "ETH:10", *, tag: str = "funded",
                           display_name: str = "Test user") -> uuid.UUID:
    """A bare user with play money: the sandbox credit sign-up gives on the devnet (``"USD:100.00,ETH:1.5"``)."""
    user_id = await make_user(sessions, tag=tag, display_name=display_name)
    async with unit_of_work(sessions) as session:
        await ledger.sandbox_credit(session, user_id, credit)
    return user_id


async def make_withdrawal(sessions: Sessions, user_id: uuid.UUID, chain: str, *, amount: int, fee: int = 0,
                          asset: str = "ETH", to_address: str = DESTINATION, state: str = "requested",
                          **columns: Any) -> Withdrawal:
    """A withdrawal row in ``state`` holding ``amount + fee`` of the user's money, as the service leaves it
    (its compliance checks are the service's tests); ``columns`` set the rest (tx_hash, nonce…)."""
    withdrawal_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        hold = await ledger.hold(session, f"withdrawal:{withdrawal_id}", user_id, asset, amount + fee,
                                 type="withdrawal_hold", reference_kind="withdrawal", reference_id=str(withdrawal_id))
        withdrawal = Withdrawal(id=withdrawal_id, user_id=user_id, chain=chain, asset=asset, to_address=to_address,
                                amount=amount, fee=fee, state=state, hold_id=hold.id, approvals_required=1, **columns)
        session.add(withdrawal)
    return withdrawal


async def make_approved_withdrawal(sessions: Sessions, chain: str, *, amount: int = ETH, fee: int = 0,
                                   asset: str = "ETH", credit: str = "ETH:10",
                                   to_address: str = DESTINATION) -> uuid.UUID:
    """A customer with play money (``credit``) and an approved withdrawal, as the service leaves it after the
    last approval: what the custody worker's pipeline starts from."""
    user_id = await make_funded_user(sessions, credit, tag="wd", display_name="Withdrawer")
    withdrawal = await make_withdrawal(sessions, user_id, chain, amount=amount, fee=fee, asset=asset,
                                       to_address=to_address, state="approved")
    return withdrawal.id


# --- through the routes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LoggedIn:
    user_id: uuid.UUID
    email: str
    password: str
    headers: dict[str, str]


class HasEmail(Protocol):
    email: str


async def register(client: TestClient, *, email: str | None = None, password: str = PASSWORD,
                   display_name: str = "Test User", locale: str | None = None,
                   accept_language: str | None = None, verified: bool = True) -> dict[str, Any]:
    """POST /auth/register (a fresh email unless given); the created user's body. The account has proved
    it owns its email (``verify_email``) unless ``verified`` is False: what a test not about email
    ownership expects of a user who withdraws or is an escrow seller."""
    body: dict[str, Any] = {"email": email or unique_email(), "password": password, "display_name": display_name}
    if locale is not None:
        body["locale"] = locale
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = await client.post(f"{API}/auth/register", json=body, headers=headers)
    created = await response.json()
    assert response.status == 201, created
    if verified:
        await verify_email(client, uuid.UUID(created["id"]))
    return created


async def verify_email(client: TestClient, user_id: uuid.UUID) -> None:
    """Mark the user's email verified straight in the database, through the service the verify route
    calls once the token checks out (audited; the escrows waiting for that email are linked): no
    template, email or token needed. ``emailed_verification_token`` gives a test the real link."""
    async with unit_of_work(client.app[SESSIONS]) as session:
        await onboarding.mark_email_verified(session, await session.get_one(User, user_id))


async def publish_email_templates(client: TestClient) -> None:
    """The devnet's email templates, published (idempotent: an existing document is left alone)."""
    async with unit_of_work(client.app[SESSIONS]) as session:
        await seed_content(session)


VERIFY_LINK = re.compile(r"/verify-email\?token=([A-Za-z0-9_-]+)")


async def emailed_verification_token(client: TestClient, user_id: uuid.UUID | str) -> str:
    """The token of the newest verification link emailed to the user, read from its stored delivery
    (rendered when queued): the published ``email.verify`` template must exist (``publish_email_templates``)."""
    async with client.app[SESSIONS]() as session:
        text = await session.scalar(
            select(EmailDelivery.text)
            .where(EmailDelivery.user_id == uuid.UUID(str(user_id)), EmailDelivery.template_slug == "email.verify")
            .order_by(EmailDelivery.created_at.desc()).limit(1))
    assert text is not None, f"no verification email to user {user_id}: is email.verify published?"
    found = VERIFY_LINK.search(text)
    assert found is not None, text
    return found.group(1)


async def bearer(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """POST /auth/login; the Bearer headers of the new session."""
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def login_as(client: TestClient, database_url: str, *roles: str, verified: bool = True) -> LoggedIn:
    """A fresh user registered through the real routes (with ``roles``, if any, instead of customer), logged in;
    with a verified email unless ``verified`` is False (see ``register``)."""
    email = unique_email()
    user_id = uuid.UUID((await register(client, email=email, verified=verified))["id"])
    if roles:
        engine = create_engine(database_url)
        try:
            async with unit_of_work(session_factory(engine)) as session:
                await session.execute(update(User).where(User.id == user_id).values(roles=list(roles)))
        finally:
            await engine.dispose()
    return LoggedIn(user_id, email, PASSWORD, await bearer(client, email))


async def make_escrow(client: TestClient, buyer: LoggedIn, *, amount: str = "8000.00", currency: str = "USD",
                      seller: HasEmail | None = None, seller_email: str | None = None,
                      title: str = "Equipment delivery",
                      description: str = "Servers per specification") -> dict[str, Any]:
    """POST /escrow as ``buyer`` (with a seller, registered or only an email, if given); the contract's body."""
    body: dict[str, Any] = {"title": title, "description": description, "amount": amount, "currency": currency}
    if seller is not None or seller_email is not None:
        body["seller_email"] = seller_email or seller.email
    response = await client.post(f"{API}/escrow", json=body, headers=buyer.headers)
    assert response.status == 201, await response.text()
    return await response.json()


# --- MFA and approvals ----------------------------------------------------------------------------

TOTP_STEP = 30  # seconds, as identity.mfa counts them
# The server accepts the previous, current and next step (±1 for clock drift), each once. Near the end
# of a step the previous one may expire before the request lands: it is not offered then.
PREVIOUS_STEP_MARGIN = 5


@dataclass
class Totp:
    """An authenticator app that never offers a code of a step it has used (the server takes each once)."""

    secret: str
    last_step: int = -1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def code(self) -> str:
        """The code of the oldest step still accepted and not used yet; waits for the next step if none is."""
        while True:
            now = time.time()
            current = int(now // TOTP_STEP)
            steps = ([current - 1] if now % TOTP_STEP < TOTP_STEP - PREVIOUS_STEP_MARGIN else []) + [current, current + 1]
            for step in steps:
                if step > self.last_step:
                    self.last_step = step
                    return pyotp.TOTP(self.secret).at(step * TOTP_STEP)
            await asyncio.sleep((current + 1) * TOTP_STEP - now + 0.05)


@dataclass(frozen=True)
class Approver:
    """An operator (or admin) with MFA on, as approving a withdrawal requires."""

    user: LoggedIn
    totp: Totp

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.user_id

    @property
    def headers(self) -> dict[str, str]:
        return self.user.headers


async def enable_mfa(client: TestClient, user: LoggedIn) -> Totp:
    """POST /auth/mfa/enroll and /auth/mfa/verify as ``user``: MFA on; the authenticator that goes with it."""
    enrolled = await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password}, headers=user.headers)
    assert enrolled.status in (200, 201), await enrolled.text()
    totp = Totp((await enrolled.json())["secret"])
    verified = await client.post(f"{API}/auth/mfa/verify", json={"code": await totp.code()}, headers=user.headers)
    assert verified.status == 200, await verified.text()
    return totp


async def login_approver(client: TestClient, database_url: str, role: str = "operator") -> Approver:
    """A fresh operator (or admin) with MFA on, logged in."""
    user = await login_as(client, database_url, role)
    return Approver(user, await enable_mfa(client, user))


async def approve(client: TestClient, approver: Approver, withdrawal_id: str | uuid.UUID) -> Any:
    """POST …/withdrawals/{id}/sign with a fresh TOTP code of the approver; the response (not checked).
    One approver's approvals go one at a time: a code of an older step sent after a newer one is refused."""
    async with approver.totp.lock:
        return await client.post(f"{API}/platform/crypto/withdrawals/{withdrawal_id}/sign",
                                 json={"totp_code": await approver.totp.code()}, headers=approver.headers)


# --- waiting for what another task or process does --------------------------------------------------

async def wait_until(condition: Any, *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Call ``condition`` (a plain or an async function) until it returns something truthy; that value.

    How a test waits for a message consumed, a row written or a stream subscribed: a fixed sleep is
    too short on a loaded machine and too long everywhere else. ``timeout`` bounds a hung test, it
    is not a performance limit; running out of it fails naming ``what`` never happened.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what or condition!r} (last answer: {result!r})")
        await asyncio.sleep(interval)


def consumed(broker: Any, queue: str, message_ids: Any = None) -> bool:
    """Whether a Dramatiq RedisBroker's workers are done with ``message_ids`` (every message of ``queue``
    when None): a message stays in the ``<namespace>:<queue>.msgs`` hash (or ``.DQ.msgs`` while a
    retry waits) from its enqueue until a worker acknowledges it after running it (dispatch.lua)."""
    hashes = [f"{broker.namespace}:{queue}.msgs", f"{broker.namespace}:{queue}.DQ.msgs"]
    if message_ids is None:
        return all(broker.client.hlen(name) == 0 for name in hashes)
    return not any(broker.client.hexists(name, message_id) for name in hashes for message_id in message_ids)


# --- the scheduler --------------------------------------------------------------------------------

async def run_schedule_entry(broker: Any, redis_url: str, namespace: str, entry_id: str, queue: str) -> int:
    """Run the scheduler entry ``entry_id`` once, as its trigger would; the messages waiting on ``queue``."""
    next(entry for entry in SCHEDULE if entry.id == entry_id).enqueue(broker)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        return (await queue_depths(client, [queue], namespace=namespace))[queue]
    finally:
        await client.aclose()
