"""Email delivery: a template's test-send through a real SMTP server and a real Dramatiq worker,
retries and recorded failures, product emails."""

from __future__ import annotations

import smtplib
import sys
import uuid

import pytest
from aiosmtpd.controller import Controller

from notifications.actors import send_email
from content.email import send_product_email
from core.db import create_engine, session_factory, unit_of_work
from devnet.processes import ManagedProcess, free_port, port_open
from devnet.smtp import MaildirHandler
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from tests.factories import consumed, make_user, unique_email, wait_until
from tests.integration.content.conftest import API, VARIABLES, email_template, fetch_all
from tests.integration.notifications.conftest import delivery_row, messages, notifications_worker, settled

pytestmark = pytest.mark.usefixtures("empty_notifications_queue")


class RejectingRecipients(MaildirHandler):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 No such mailbox"


async def test_test_send_lands_in_the_maildir(cms, cms_client, admin, settings, smtp_port, maildir, redis_url,
                                              database_url):
    slug = await email_template(cms)
    recipient = f"{uuid.uuid4().hex[:8]}@example.com"
    _, queued = await cms.post(f"/cms/email/{slug}/test-send", {"to": recipient, "variables": VARIABLES},
                               status=202)
    assert queued["state"] == "queued" and queued["to"] == recipient and queued["subject"] == "Escrow Servers funded"

    worker_settings = settings.model_copy(update={"smtp_port": smtp_port, "smtp_from": "VirtuOZ <ops@virtuoz.test>"})
    async with notifications_worker(redis_url, database_url, worker_settings):
        row = await settled(database_url, queued["id"])
    assert (row.state, row.attempts, row.last_error) == ("sent", 1, None) and row.sent_at is not None

    [message] = [m for m in messages(maildir) if m["To"] == recipient]
    assert message["Subject"] == "Escrow Servers funded"
    assert message["From"] == "VirtuOZ <ops@virtuoz.test>"
    assert message["Message-ID"] == f"<{queued['id']}@virtuoz>"
    html = message.get_body(("html",)).get_content()
    assert "<strong>Ada &lt;Lovelace&gt;</strong>" in html
    assert message.get_body(("plain",)).get_content().startswith("Hello **Ada <Lovelace>**")

    response = await cms_client.get(f"{API}/admin/cms/email/deliveries", params={"state": "sent"},
                                    headers=admin.headers)
    listed = {item["id"]: item for item in (await response.json())["items"]}
    assert listed[queued["id"]]["state"] == "sent"


async def test_a_delivery_is_sent_once_however_often_its_message_arrives(cms, settings, smtp_port, maildir,
                                                                         redis_url, database_url):
    slug = await email_template(cms)
    recipient = f"{uuid.uuid4().hex[:8]}@example.com"
    _, queued = await cms.post(f"/cms/email/{slug}/test-send", {"to": recipient, "variables": VARIABLES}, status=202)
    worker_settings = settings.model_copy(update={"smtp_port": smtp_port})
    async with notifications_worker(redis_url, database_url, worker_settings):
        await settled(database_url, queued["id"])
    broker = create_broker(redis_url)
    redelivery = broker.enqueue(send_email.message(queued["id"]))  # a redelivery
    close_broker(broker)
    async with notifications_worker(redis_url, database_url, worker_settings) as worker_broker:
        await wait_until(lambda: consumed(worker_broker, "notifications", [redelivery.message_id]), timeout=45,
                         what="the redelivered message run by the worker")
    assert len([m for m in messages(maildir) if m["To"] == recipient]) == 1
    assert (await delivery_row(database_url, queued["id"])).attempts == 1


async def test_smtp_down_is_retried_then_recorded_failed(cms, cms_client, admin, settings, redis_url, database_url):
    slug = await email_template(cms)
    _, queued = await cms.post(f"/cms/email/{slug}/test-send", {"to": "x@example.com", "variables": VARIABLES},
                               status=202)
    closed_port = free_port()  # nothing listens here
    worker_settings = settings.model_copy(update={"smtp_port": closed_port, "smtp_max_retries": 2,
                                                  "smtp_retry_backoff_ms": 20, "smtp_timeout_seconds": 2})
    async with notifications_worker(redis_url, database_url, worker_settings):
        row = await settled(database_url, queued["id"])
    assert row.state == "failed" and row.attempts == 3  # the first try and two retries
    assert "connect" in row.last_error.lower() or "refused" in row.last_error.lower(), row.last_error

    response = await cms_client.get(f"{API}/admin/cms/email/deliveries", params={"state": "failed"},
                                    headers=admin.headers)
    listed = {item["id"]: item for item in (await response.json())["items"]}
    assert listed[queued["id"]]["attempts"] == 3 and listed[queued["id"]]["last_error"] == row.last_error
    events = await fetch_all(database_url, "SELECT type FROM audit_events WHERE aggregate_type = 'email_delivery'"
                             " AND aggregate_id = :id ORDER BY seq", id=queued["id"])
    assert [event.type for event in events] == ["email.queued", "email.failed"]


async def test_a_permanent_refusal_fails_without_retrying(cms, settings, tmp_path, redis_url, database_url):
    slug = await email_template(cms)
    _, queued = await cms.post(f"/cms/email/{slug}/test-send", {"to": "nobody@example.com", "variables": VARIABLES},
                               status=202)
    port = free_port()
    controller = Controller(RejectingRecipients(tmp_path / "rejected"), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        worker_settings = settings.model_copy(update={"smtp_port": port, "smtp_max_retries": 5,
                                                      "smtp_retry_backoff_ms": 20})
        async with notifications_worker(redis_url, database_url, worker_settings):
            row = await settled(database_url, queued["id"])
    finally:
        controller.stop()
    assert (row.state, row.attempts) == ("failed", 1) and "550" in row.last_error


async def test_product_email_goes_to_the_user_after_commit(cms, settings, smtp_port, maildir, redis_url,
                                                           database_url):
    slug = await email_template(cms, publish=True, subject="Hi {{ display_name }}", body="Funded: {{ escrow_title }}")
    unpublished = await email_template(cms)

    engine = create_engine(database_url, pool_size=2)
    broker = create_broker(redis_url)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    try:
        # A users row, not a sign-up: once a test of this pytest worker has seeded the templates, a
        # sign-up also sends the welcome email, and this test would count two messages.
        user_email = unique_email()
        user_id = await make_user(factory, email=user_email, display_name="Test User")
        async with unit_of_work(factory) as session:
            delivery = await send_product_email(session, user_id, slug, {"escrow_title": "Servers"})
            skipped = await send_product_email(session, user_id, unpublished, {})
    finally:
        close_broker(broker)
        await engine.dispose()
    assert skipped is None

    async with notifications_worker(redis_url, database_url, settings.model_copy(update={"smtp_port": smtp_port})):
        row = await settled(database_url, str(delivery.id))
    assert row.state == "sent" and row.purpose == "product" and row.user_id == user_id
    [message] = [m for m in messages(maildir) if m["To"] == user_email]
    assert message["Subject"] == "Hi Test User"


def test_devnet_smtp_runs_as_a_child_process(tmp_path):
    port, maildir = free_port(), tmp_path / "mail"
    child = ManagedProcess("smtp", [sys.executable, "-m", "devnet.smtp", "--port", str(port), "--maildir", str(maildir)],
                           log_path=tmp_path / "smtp.log").start()
    try:
        child.wait_until(lambda: port_open(port), timeout=20)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: ping\r\n\r\nhello\r\n")
    finally:
        child.stop()
    [message] = messages(maildir)
    assert message["Subject"] == "ping" and not list(maildir.glob(".*.tmp"))
