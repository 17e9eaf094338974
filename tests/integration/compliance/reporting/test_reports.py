"""Reports through the real routes and a real in-process compliance worker.

Seeded movements are backdated into a day of 2001–2009 (random per test) that no other test
writes into: the ledger stamps transfers with the server clock and refuses updates, so the
seeding transaction — and only it — disables the append-only triggers (session_replication_role,
as the database's superuser) to move its own rows into the past.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from compliance.review import service as review
from compliance.reporting.models import ComplianceReport
from core import audit
from core.db import unit_of_work
from custody.ledger import service as ledger
from custody.ledger.service import AccountRef
from tests.integration.compliance.conftest import drain, report_file

ETH, USDC = 10**18, 10**6


def period_day() -> datetime:
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(0, 9 * 365))


class Seeder:
    """Posts real ledger transfers, remembering the moment each must carry."""

    def __init__(self, session) -> None:
        self.session, self.moments = session, {}

    async def deposit(self, user, currency, amount, at, *, type="deposit"):
        posted = await ledger.move(self.session, reference=f"test:{uuid.uuid4()}", type=type,
                                   source=AccountRef.system("chain_deposits"), destination=AccountRef.user(user),
                                   currency=currency, amount=amount)
        self.moments[posted.id] = at

    async def settle(self, user, currency, amount, at, *, destination, hold_type, post_type, fee=None):
        hold = await ledger.hold(self.session, f"test:{uuid.uuid4()}", user, currency, amount, type=hold_type)
        self.moments[hold.id] = at - timedelta(minutes=5)
        posted = await ledger.post_hold(self.session, hold.id, destination, fee=fee, type=post_type)
        transfer_id = await self.session.scalar(text(
            "SELECT id FROM ledger_transfers WHERE hold_id = :hold AND id <> :hold"), {"hold": posted.id})
        self.moments[transfer_id] = at


async def seed(factory, steps) -> Seeder:
    async with unit_of_work(factory) as session:
        seeder = Seeder(session)
        await steps(seeder)
    async with unit_of_work(factory) as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for transfer_id, moment in seeder.moments.items():
            for table, column in (("ledger_transfers", "id"), ("ledger_postings", "transfer_id")):
                await session.execute(text(f"UPDATE {table} SET created_at = :at WHERE {column} = :id"),
                                      {"at": moment, "id": transfer_id})
    return seeder


def window(start: datetime, days: int = 1) -> dict:
    return {"period_start": start.isoformat(), "period_end": (start + timedelta(days=days)).isoformat()}


async def create(client, officer, **body):
    return await client.post("/api/v1/compliance/reports", json=body, headers=officer.headers)


async def test_large_transactions_match_the_hand_computed_expectation(client, login_as, factory, app_broker,
                                                                      settings) -> None:
    officer = await login_as(client, "compliance")
    a, b, c, d, e = [(await login_as(client)).user_id for _ in range(5)]
    day = period_day()

    async def steps(seed: Seeder) -> None:
        h = lambda hours: day + timedelta(hours=hours)
        await seed.deposit(a, "USD", 1_000_000, h(-30), type="sandbox_credit")  # not a movement a report counts
        await seed.deposit(b, "ETH", 5 * ETH, h(-30), type="sandbox_credit")
        await seed.deposit(d, "USDC", 8000 * USDC, h(-2))  # 10,960 CAD, the day before: only in d's window
        await seed.deposit(a, "ETH", 3 * ETH, h(1))  # 12,330 CAD: single
        await seed.deposit(d, "USDC", 100 * USDC, h(1.5))  # 137 CAD; with the 8,000 USDC: 11,097 in 24 h
        await seed.deposit(a, "ETH", 1 * ETH, h(2))  # 4,110 CAD; with the 3 ETH: 16,440 in 24 h
        await seed.deposit(b, "USDC", 5000 * USDC, h(3))  # 6,850 CAD
        await seed.settle(b, "ETH", 2 * ETH, h(5), destination=AccountRef.system("hot_wallet_out"),
                          hold_type="withdrawal_hold", post_type="withdrawal_post", fee=ETH // 1000)  # out 8,220: no
        await seed.settle(a, "USD", 1_000_000, h(6), destination=AccountRef.user(c), hold_type="escrow_fund",
                          post_type="escrow_release")  # 10,000 USD = 13,700 CAD: out for a, in for c
        await seed.deposit(b, "USDC", 2400 * USDC, h(10))  # 3,288 CAD; with the 5,000 USDC: 10,138 in 24 h
        await seed.deposit(e, "ETH", 10 * ETH, h(25))  # after the period

    await seed(factory, steps)
    response = await create(client, officer, jurisdiction="CA", type="large_transactions", **window(day))
    assert response.status == 202, await response.text()
    queued = await response.json()
    assert queued["state"] == "queued"
    await drain(app_broker, settings)

    listing = await client.get("/api/v1/compliance/reports/CA?type=large_transactions", headers=officer.headers)
    item = next(item for item in (await listing.json())["items"] if item["id"] == queued["id"])
    assert (item["state"], item["rows"]) == ("ready", 7)
    assert item["parameters"]["threshold"] == "10000" and item["parameters"]["currency"] == "CAD"

    download = await client.get(f"/api/v1/compliance/reports/CA/{queued['id']}/download?format=csv",
                                headers=officer.headers)
    assert download.status == 200 and download.content_type == "text/csv"
    content = await download.read()
    assert hashlib.sha256(content).hexdigest() == item["sha256"] == download.headers["X-Content-SHA256"]
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    at = lambda hours: (day + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    got = sorted((r["created_at"], r["user_id"], r["direction"], r["currency"], r["amount"], r["value"], r["price"],
                  r["movement"], r["reason"], r["window_total"]) for r in rows)
    expected = sorted([
        (at(1), str(a), "in", "ETH", "3", "12330.00", "4110", "deposit", "single", ""),
        (at(1.5), str(d), "in", "USDC", "100", "137.00", "1.37", "deposit", "aggregated_24h", "11097.00"),
        (at(2), str(a), "in", "ETH", "1", "4110.00", "4110", "deposit", "aggregated_24h", "16440.00"),
        (at(3), str(b), "in", "USDC", "5000", "6850.00", "1.37", "deposit", "aggregated_24h", "10138.00"),
        (at(6), str(a), "out", "USD", "10000.00", "13700.00", "1.37", "escrow", "single", ""),
        (at(6), str(c), "in", "USD", "10000.00", "13700.00", "1.37", "escrow", "single", ""),
        (at(10), str(b), "in", "USDC", "2400", "3288.00", "1.37", "deposit", "aggregated_24h", "10138.00"),
    ])
    assert got == expected
    assert all(r["value_currency"] == "CAD" and r["price_as_of"] == "2000-01-01T00:00:00Z" for r in rows)

    as_json = await client.get(f"/api/v1/compliance/reports/CA/{queued['id']}/download?format=json",
                               headers=officer.headers)
    raw = await as_json.read()
    assert hashlib.sha256(raw).hexdigest() == item["json_sha256"]
    document = json.loads(raw)
    assert document["report"]["period_start"] == at(0)
    assert [row["transfer_id"] for row in document["rows"]] == [row["transfer_id"] for row in rows]

    async with factory() as session:
        events = [event.type for event in await audit.events_of(session, "compliance_report", queued["id"])]
    assert events == ["report.queued", "report.running", "report.ready"]


async def test_other_report_types_are_generated_from_real_data(client, login_as, factory, app_broker,
                                                               settings) -> None:
    officer = await login_as(client, "admin")
    user = (await login_as(client)).user_id
    day = period_day()

    async def steps(seed: Seeder) -> None:
        await seed.deposit(user, "ETH", ETH, day + timedelta(hours=1))  # 3,000 USD: at the US Travel Rule threshold
        await seed.deposit(user, "USDC", 2999 * USDC, day + timedelta(hours=2))  # below it

    seeded = await seed(factory, steps)
    flagged = next(iter(seeded.moments))  # the ETH deposit
    async with unit_of_work(factory) as session:
        await review.flag(session, flagged, "unusual for this customer", None)
    ids = {}
    for report_type in ("travel_rule", "suspicious_activity", "reconciliation"):
        response = await create(client, officer, jurisdiction="US", type=report_type, **window(day))
        assert response.status == 202
        ids[report_type] = (await response.json())["id"]
    await drain(app_broker, settings)
    async with factory() as session:
        found = {report.type: report for report in (await session.scalars(
            select(ComplianceReport).where(ComplianceReport.id.in_([uuid.UUID(i) for i in ids.values()])))).all()}
    assert all(report.state == "ready" for report in found.values())
    assert found["travel_rule"].rows == 1
    suspicious = json.loads(await report_file(settings, found["suspicious_activity"].json_path))["rows"]
    assert [(row["subject"], row["subject_id"], row["state"]) for row in suspicious] == [
        ("transaction", str(flagged), "flagged")]  # and no KYC screening hit was submitted that day
    # Liabilities at the period's end include this test's user; real sums, one row per currency held.
    assert found["reconciliation"].rows >= 2
    travel = json.loads(await report_file(settings, found["travel_rule"].json_path))["rows"]
    assert [(row["user_id"], row["amount"], row["value"]) for row in travel] == [(str(user), "1", "3000.00")]


async def test_a_report_that_cannot_be_converted_fails_with_its_reason(client, login_as, factory, app_broker,
                                                                       settings, tmp_path, make_client) -> None:
    path = tmp_path / "jurisdictions.json"
    path.write_text(json.dumps({"jurisdictions": [{
        "code": "JP", "name": "Japan (test)", "currency": "JPY", "travel_rule_threshold": "0",
        "travel_rule_source": "test", "reports": {"large_transactions": {"threshold": "1", "source": "test"}}}]}))
    custom = settings.model_copy(update={"compliance_jurisdictions_file": path})
    app = await make_client(custom)
    officer = await login_as(app, "compliance")
    user = (await login_as(app)).user_id
    day = period_day()

    async def steps(seed: Seeder) -> None:
        await seed.deposit(user, "ETH", ETH, day + timedelta(hours=1))

    await seed(factory, steps)
    response = await create(app, officer, jurisdiction="JP", type="large_transactions", **window(day))
    assert response.status == 202
    report_id = (await response.json())["id"]
    await drain(app_broker, custom)
    listing = await (await app.get("/api/v1/compliance/reports/JP", headers=officer.headers)).json()
    item = next(item for item in listing["items"] if item["id"] == report_id)
    assert item["state"] == "failed" and item["error"].startswith("price_missing")
    download = await app.get(f"/api/v1/compliance/reports/JP/{report_id}/download", headers=officer.headers)
    assert download.status == 409


@pytest.mark.parametrize(("body", "code"), [
    ({"jurisdiction": "XX", "type": "large_transactions"}, "unknown_jurisdiction"),
    ({"jurisdiction": "CA", "type": "weekly_gossip"}, "unknown_report_type"),
], ids=["jurisdiction", "type"])
async def test_unknown_jurisdiction_or_type_is_a_422(client, login_as, body, code) -> None:
    officer = await login_as(client, "compliance")
    response = await create(client, officer, **body, **window(period_day()))
    assert response.status == 422
    assert (await response.json())["error"]["code"] == code


@pytest.mark.parametrize("days", [0, -1], ids=["empty", "reversed"])
async def test_a_period_ending_before_it_starts_is_a_422(client, login_as, days) -> None:
    officer = await login_as(client, "compliance")
    response = await create(client, officer, jurisdiction="CA", type="large_transactions",
                            **window(period_day(), days))
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_period"


async def test_a_naive_period_is_a_422(client, login_as) -> None:
    officer = await login_as(client, "compliance")
    response = await create(client, officer, jurisdiction="CA", type="large_transactions",
                            period_start="2001-01-01T00:00:00", period_end="2001-01-02T00:00:00")
    assert response.status == 422


async def test_access_and_lookups(client, login_as) -> None:
    customer, officer, admin = (await login_as(client), await login_as(client, "compliance"),
                                await login_as(client, "admin"))
    body = {"jurisdiction": "EU", "type": "large_transactions", **window(period_day())}
    assert (await create(client, customer, **body)).status == 403
    assert (await client.get("/api/v1/compliance/reports/EU", headers=customer.headers)).status == 403
    created = await create(client, officer, **body)
    report_id = (await created.json())["id"]
    # The admin view is for admins only; compliance officers use the per-jurisdiction list.
    assert (await client.get("/api/v1/admin/compliance/reports", headers=officer.headers)).status == 403
    admin_list = await client.get("/api/v1/admin/compliance/reports?jurisdiction=EU&state=queued&limit=100",
                                  headers=admin.headers)
    assert admin_list.status == 200
    items = (await admin_list.json())["items"]
    assert report_id in [item["id"] for item in items]
    assert all(item["jurisdiction"] == "EU" and item["state"] == "queued" for item in items)
    assert (await client.get("/api/v1/compliance/reports/XX", headers=officer.headers)).status == 422
    assert (await client.get(f"/api/v1/compliance/reports/CA/{report_id}/download",
                             headers=officer.headers)).status == 404  # it belongs to EU
    assert (await client.get(f"/api/v1/compliance/reports/EU/{uuid.uuid4()}/download",
                             headers=officer.headers)).status == 404
    assert (await client.get(f"/api/v1/compliance/reports/EU/{report_id}/download?format=pdf",
                             headers=officer.headers)).status == 422
    not_ready = await client.get(f"/api/v1/compliance/reports/EU/{report_id}/download", headers=officer.headers)
    assert not_ready.status == 409 and (await not_ready.json())["error"]["code"] == "report_not_ready"


async def test_admin_list_paginates(client, login_as) -> None:
    officer, admin = await login_as(client, "compliance"), await login_as(client, "admin")
    start = period_day()
    created = [(await (await create(client, officer, jurisdiction="FATF", type="reconciliation",
                                    **window(start + timedelta(days=n)))).json())["id"] for n in range(3)]
    seen, cursor = [], None
    while True:
        query = "jurisdiction=FATF&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(f"/api/v1/admin/compliance/reports?{query}", headers=admin.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(created) <= set(seen) and len(seen) == len(set(seen))


async def test_a_plain_date_period_is_the_utc_day(client, login_as) -> None:
    """`2026-11-01` to `2026-11-30` is the whole of November in UTC: both days included."""
    officer = await login_as(client, "compliance")
    jurisdiction = "US"
    response = await create(client, officer, jurisdiction=jurisdiction, type="travel_rule",
                            period_start="1999-11-01", period_end="1999-11-30")
    body = await response.json()
    assert response.status == 202, body
    listed = await client.get(f"/api/v1/compliance/reports/{jurisdiction}", headers=officer.headers,
                              params={"limit": 100})
    (report,) = [item for item in (await listed.json())["items"] if item["id"] == body["id"]]
    assert (report["period_start"], report["period_end"]) == ("1999-11-01T00:00:00Z", "1999-12-01T00:00:00Z")
    one_day = await create(client, officer, jurisdiction=jurisdiction, type="large_transactions",
                           period_start="1999-10-31", period_end="1999-10-31")
    assert one_day.status == 202, await one_day.text()
    mixed = await create(client, officer, jurisdiction=jurisdiction, type="suspicious_activity",
                         period_start="1999-09-01", period_end="1999-09-02T12:00:00Z")
    assert mixed.status == 202, await mixed.text()
    for wrong in ("1999-13-01", "1999-11-01T00:00:00"):  # not a date, and a time without a zone
        refused = await create(client, officer, jurisdiction=jurisdiction, type="reconciliation",
                               period_start=wrong, period_end="1999-12-01")
        assert refused.status == 422, await refused.text()
