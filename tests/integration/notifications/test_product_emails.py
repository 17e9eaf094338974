"""Product emails end to end: the business change through the real routes (or, for a withdrawal's
confirmation, the custody pipeline's settle step), then a real notifications worker renders the
seeded template and hands it to a real SMTP server writing a maildir. Internal notes email nobody."""

from __future__ import annotations

import asyncio
import re
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from content.seed import SEEDS, seed_content
from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings
from custody.withdrawals import pipeline
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt
from jobs.broker import close_broker, create_broker, queue_depths
from notifications.emails import PRODUCT_EMAIL, missing_builders, product_email
from jobs.registry import JobError, bind_broker, registered_jobs
from tests.factories import bearer, make_escrow, register
from tests.integration.content.conftest import API, fetch_all
from tests.integration.notifications.conftest import messages, notifications_worker
from tests.integration.custody.withdrawals.conftest import DESTINATION, DEVNET_SANCTIONS, USDC

pytestmark = pytest.mark.usefixtures("empty_notifications_queue", "seeded_templates")

TICKETS = f"{API}/helpdesk/tickets"
WELCOME = "Welcome to VirtuOZ, Test User"
VERIFY = "Confirm your email address for VirtuOZ"  # every sign-up is also sent its verification link
TX_HASH = "0x" + "ab" * 32


@pytest.fixture
async def seeded_templates(database_url: str) -> None:
    """The devnet's email templates, published (idempotent: an existing document is left alone)."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            await seed_content(session)
    finally:
        await engine.dispose()


async def run_worker(settings, smtp_port: int, redis_url: str, database_url: str) -> None:
    """Run the notifications worker until every product email and delivery queued so far is done."""
    async with notifications_worker(redis_url, database_url, settings.model_copy(update={"smtp_port": smtp_port})) \
            as broker:
        await drain(broker)


async def drain(broker: RedisBroker) -> None:
    await asyncio.to_thread(broker.join, "notifications", timeout=90_000)


def inbox(maildir: Path, recipient: str) -> list[EmailMessage]:
    return [message for message in messages(maildir) if message["To"] == recipient]


def subjects(maildir: Path, recipient: str) -> list[str]:
    return sorted(message["Subject"] for message in inbox(maildir, recipient))


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


async def deliveries(database_url: str, user_id: uuid.UUID) -> list:
    return await fetch_all(database_url, "SELECT template_slug, state, recipient, subject, text, html"
                           " FROM email_deliveries WHERE user_id = :user ORDER BY created_at", user=user_id)


def test_every_product_email_has_its_variables_and_the_job_is_on_the_notifications_queue():
    assert missing_builders() == []
    [spec] = [spec for spec in registered_jobs() if spec.name == PRODUCT_EMAIL]
    assert spec.queue == "notifications"


async def test_an_unknown_template_or_a_missing_ref_fails_in_the_transaction(database_url, redis_url):
    engine = create_engine(database_url, pool_size=1)
    broker = create_broker(redis_url)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    try:
        async with factory() as session:
            with pytest.raises(JobError, match="no product email"):
                product_email(session, uuid.uuid4(), "escrow.funded.typo", uuid.uuid4())
            with pytest.raises(JobError, match="ref names escrow"):
                product_email(session, uuid.uuid4(), "escrow.funded")
            with pytest.raises(JobError, match="ref names nothing"):
                product_email(session, uuid.uuid4(), "welcome", uuid.uuid4())
    finally:
        close_broker(broker)
        await engine.dispose()


async def test_sign_up_sends_the_welcome_email_and_a_verification_link_that_works(
        make_client, settings, login_as, smtp_port, maildir, redis_url, database_url):
    client = await make_client(settings.model_copy(update={"public_url": "https://app.example.com"}))
    user = await login_as(client, verified=False)
    await run_worker(settings, smtp_port, redis_url, database_url)
    assert subjects(maildir, user.email) == [VERIFY, WELCOME]
    by_subject = {message["Subject"]: message for message in inbox(maildir, user.email)}
    assert "your VirtuOZ account is ready" in text_of(by_subject[WELCOME])
    rows = await deliveries(database_url, user.user_id)
    assert sorted((row.template_slug, row.state, row.recipient) for row in rows) == [
        ("email.verify", "sent", user.email), ("welcome", "sent", user.email)]

    # The link as the user gets it, from the maildir: the front end posts its token.
    [token] = set(re.findall(r"https://app\.example\.com/verify-email\?token=([A-Za-z0-9_-]+)",
                             text_of(by_subject[VERIFY])))
    assert f'href="https://app.example.com/verify-email?token={token}"' in \
        by_subject[VERIFY].get_body(("html",)).get_content()
    response = await client.post(f"{API}/auth/email/verify", json={"token": token})
    assert response.status == 200, await response.text()
    me = await (await client.get(f"{API}/me", headers=user.headers)).json()
    assert me["email_verified"] is True


async def test_escrow_funded_released_and_disputed_email_both_parties(make_client, settings, login_as, smtp_port,
                                                                     maildir, redis_url, database_url):
    client = await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00", "escrow_fee_bps": 150}))
    buyer, seller = await login_as(client), await login_as(client)

    async def escrow(title: str, amount: str) -> str:
        return (await make_escrow(client, buyer, title=title, amount=amount, seller=seller))["id"]

    async def act(user, escrow_id: str, action: str, body: dict | None = None) -> None:
        response = await client.post(f"{API}/escrow/{escrow_id}/{action}", json=body or {}, headers=user.headers)
        assert response.status == 200, await response.text()

    released, disputed = f"Servers {uuid.uuid4().hex[:6]}", f"Racks {uuid.uuid4().hex[:6]}"
    first = await escrow(released, "1000.00")
    await act(buyer, first, "fund")
    await act(buyer, first, "release")
    second = await escrow(disputed, "50.00")
    await act(buyer, second, "fund")
    await act(seller, second, "dispute", {"reason": "not delivered"})
    await run_worker(settings, smtp_port, redis_url, database_url)

    for party in (buyer, seller):
        assert subjects(maildir, party.email) == sorted([
            WELCOME, VERIFY,
            f"Escrow “{released}” is funded", f"Escrow “{released}” was released",
            f"Escrow “{disputed}” is funded", f"Escrow “{disputed}” is disputed"]), party
        by_subject = {message["Subject"]: text_of(message) for message in inbox(maildir, party.email)}
        assert "funded with 1000.00 USD" in by_subject[f"Escrow “{released}” is funded"]
        assert "985.00 USD went to the seller" in by_subject[f"Escrow “{released}” was released"]  # less the 1.5 %
        assert "a dispute was opened" in by_subject[f"Escrow “{disputed}” is disputed"]
        rows = await deliveries(database_url, party.user_id)
        assert {row.state for row in rows} == {"sent"} and {row.recipient for row in rows} == {party.email}


async def test_a_staff_reply_emails_the_customer_and_internal_notes_email_nobody(client, login_as, settings,
                                                                                  smtp_port, maildir, redis_url,
                                                                                  database_url):
    customer, support = await login_as(client), await login_as(client, "support")
    response = await client.post(TICKETS, json={"subject": "Withdrawal stuck", "body": "Pending for a day."},
                                 headers=customer.headers)
    assert response.status == 201, await response.text()
    ticket_id = (await response.json())["id"]
    await run_worker(settings, smtp_port, redis_url, database_url)  # the welcome emails go out first

    secret = f"note-{uuid.uuid4().hex}"
    response = await client.post(f"{TICKETS}/{ticket_id}/internal-notes", json={"body": f"KYC flag {secret}"},
                                 headers=support.headers)
    assert response.status == 201, await response.text()
    redis = Redis.from_url(redis_url)
    try:
        assert await queue_depths(redis, ["notifications"]) == {"notifications": 0}  # nothing was even queued
    finally:
        await redis.aclose()

    response = await client.post(f"{TICKETS}/{ticket_id}/messages", json={"body": "We are checking the chain."},
                                 headers=support.headers)
    assert response.status == 201, await response.text()
    response = await client.post(f"{TICKETS}/{ticket_id}/messages", json={"body": "Thanks!"},
                                 headers=customer.headers)
    assert response.status == 201, await response.text()
    await run_worker(settings, smtp_port, redis_url, database_url)

    assert subjects(maildir, customer.email) == sorted(["Re: Withdrawal stuck", WELCOME, VERIFY])
    [reply] = [message for message in inbox(maildir, customer.email) if message["Subject"].startswith("Re:")]
    assert "We are checking the chain." in text_of(reply)
    assert subjects(maildir, support.email) == [VERIFY, WELCOME]  # a customer reply emails no one
    assert not [path for path in maildir.glob("*.eml") if secret in path.read_text(errors="replace")]
    leaked = await fetch_all(database_url, "SELECT id FROM email_deliveries WHERE subject LIKE :s OR text LIKE :s"
                             " OR html LIKE :s", s=f"%{secret}%")
    assert leaked == []


async def test_a_confirmed_withdrawal_emails_its_owner(make_client, settings, login_as, smtp_port, maildir, redis_url,
                                                       database_url):
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC}, confirmations=1)
    client = await make_client(settings.model_copy(update={
        "chains": [chain], "sandbox_credit": "ETH:10", "sanctions_list_file": DEVNET_SANCTIONS,
        "withdrawal_fees": {"ETH": "0.001", "USDC": "1"}, "withdrawal_travel_rule_thresholds": {"ETH": "5", "USDC": "1000"},
        "withdrawal_four_eyes_thresholds": {"ETH": "8", "USDC": "10000"}}))
    owner = await login_as(client)
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", headers=owner.headers, json={
        "chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "1.25"})
    assert response.status == 201, await response.text()
    withdrawal_id = uuid.UUID((await response.json())["id"])

    # What the tracker does when the receipt has its confirmations, without a chain: the settle step.
    engine = create_engine(database_url, pool_size=1)
    broker = create_broker(redis_url)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    try:
        async with unit_of_work(factory) as session:
            withdrawal = await session.get_one(Withdrawal, withdrawal_id, with_for_update=True)
            withdrawal.state, withdrawal.tx_hash, withdrawal.block_number = "broadcast", TX_HASH, 7
            await pipeline._settle(session, chain, withdrawal, WithdrawalAttempt(tx_hash=TX_HASH), 1, 0)
    finally:
        close_broker(broker)
        await engine.dispose()
    await run_worker(settings, smtp_port, redis_url, database_url)

    [confirmed] = [message for message in inbox(maildir, owner.email) if "withdrawal" in message["Subject"]]
    assert confirmed["Subject"] == "Your withdrawal of 1.25 ETH is confirmed"
    assert f"confirmed on ethereum (transaction `{TX_HASH}`)" in text_of(confirmed)
    assert sorted((row.template_slug, row.state) for row in await deliveries(database_url, owner.user_id)) == [
        ("email.verify", "sent"), ("welcome", "sent"), ("withdrawal.confirmed", "sent")]


async def test_a_template_that_does_not_render_is_a_failed_delivery_not_a_failed_action(
        cms, client, login_as, settings, smtp_port, maildir, redis_url, database_url):
    """An editor's template needing a variable nobody gives: the reply is posted, the admin sees why
    no email went out."""
    customer, support = await login_as(client), await login_as(client, "support")
    await cms.draft("email", "ticket.reply", title="Reply", body="{{ reply }} {{ agent_name }}",
                    metadata={"subject": "Re: {{ ticket_subject }}"})
    await cms.publish("email", "ticket.reply", note="a broken template, for this test")
    try:
        response = await client.post(TICKETS, json={"subject": "Help", "body": "Hi"}, headers=customer.headers)
        ticket_id = (await response.json())["id"]
        response = await client.post(f"{TICKETS}/{ticket_id}/messages", json={"body": "Hello"},
                                     headers=support.headers)
        assert response.status == 201, await response.text()
        await run_worker(settings, smtp_port, redis_url, database_url)
    finally:
        # Put the seeded text back for the other tests of this pytest worker.
        [seed] = [seed for seed in SEEDS if seed.slug == "ticket.reply"]
        await cms.draft("email", "ticket.reply", title=seed.title, body=seed.body, metadata=seed.meta)
        await cms.publish("email", "ticket.reply", note="restore the seeded template")
    rows = [row for row in await deliveries(database_url, customer.user_id) if row.template_slug == "ticket.reply"]
    assert [(row.state, row.subject) for row in rows] == [("failed", "")]
    failed = await fetch_all(database_url, "SELECT last_error FROM email_deliveries WHERE user_id = :user"
                             " AND template_slug = 'ticket.reply'", user=customer.user_id)
    assert failed[0].last_error.startswith("missing_template_variable") and "agent_name" in failed[0].last_error
    assert subjects(maildir, customer.email) == [VERIFY, WELCOME]


async def test_product_emails_are_written_in_the_users_locale_with_fallback(client, cms, settings, smtp_port,
                                                                            maildir, redis_url, database_url):
    # A German welcome, published beside the seeded English one.
    await cms.published_doc("email", "welcome", title="Willkommen", locale="de",
                            body="Hallo {{ display_name }}, dein VirtuOZ-Konto ist bereit.",
                            metadata={"subject": "Willkommen bei VirtuOZ, {{ display_name }}"})
    austrian, canadian, plain = (f"{tag}-{uuid.uuid4().hex[:8]}@example.com" for tag in ("at", "ca", "en"))
    await register(client, email=austrian, locale="de_at")  # normalized to de-AT; de-AT → de answers
    await register(client, email=canadian, accept_language="fr-CA, fr;q=0.9, en;q=0.5")  # fr-CA → fr → en
    await register(client, email=plain)
    await run_worker(settings, smtp_port, redis_url, database_url)
    # The verification link has no German text: de-AT → de → en answers in English.
    assert subjects(maildir, austrian) == [VERIFY, "Willkommen bei VirtuOZ, Test User"]
    [german] = [message for message in inbox(maildir, austrian) if message["Subject"].startswith("Willkommen")]
    assert "dein VirtuOZ-Konto ist bereit" in text_of(german)
    assert subjects(maildir, canadian) == subjects(maildir, plain) == [VERIFY, WELCOME]


async def test_the_locale_is_shown_changed_and_validated(client, login_as, database_url):
    created = await register(client, email=f"loc-{uuid.uuid4().hex[:8]}@example.com", locale="de-AT")
    headers = await bearer(client, created["email"])
    me = await (await client.get(f"{API}/me", headers=headers)).json()
    assert me["locale"] == "de-AT"
    changed = await client.patch(f"{API}/me", json={"locale": "FR"}, headers=headers)
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["locale"] == "fr"
    for bad in ({"locale": "not a locale"}, {"locale": "x"}, {"display_name": "  "}, {"roles": ["admin"]}):
        refused = await client.patch(f"{API}/me", json=bad, headers=headers)
        assert refused.status == 422, bad
    assert (await (await client.get(f"{API}/me", headers=headers)).json())["locale"] == "fr"
    refused = await client.post(f"{API}/auth/register", json={
        "email": f"bad-{uuid.uuid4().hex[:8]}@example.com", "password": "Correct-Horse-Battery-9",
        "display_name": "X", "locale": "english please"})
    assert refused.status == 422
    events = await fetch_all(database_url, "SELECT type, data FROM audit_events WHERE aggregate_type = 'user'"
                             " AND aggregate_id = :id ORDER BY seq", id=created["id"])
    assert [(row.type, row.data) for row in events][-1] == ("user.profile_updated", {"locale": "fr"})
