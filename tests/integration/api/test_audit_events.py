"""The audit event store: export, replay with drift, tamper detection, append-only."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

import pytest
from sqlalchemy import text

from cli.audit import verify
from core import audit
from core.db import create_engine, session_factory, unit_of_work


async def execute(database_url: str, *statements: str, **params) -> None:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement), params)
    await engine.dispose()


async def test_export_lists_a_users_events_in_order_with_a_valid_chain(make_client, settings, login_as):
    client = await make_client(settings)
    admin, customer = await login_as(client, "admin"), await login_as(client)
    response = await client.get(f"/api/v1/admin/events/export/user/{customer.user_id}", headers=admin.headers)
    assert response.status == 200
    items = (await response.json())["items"]
    assert [item["type"] for item in items][:3] == ["user.registered", "user.email_verified", "user.logged_in"]
    assert [item["seq"] for item in items] == list(range(1, len(items) + 1))
    assert audit.verify_chain(items) == []
    ndjson = await client.get(f"/api/v1/admin/events/export/user/{customer.user_id}",
                              headers={**admin.headers, "Accept": "application/x-ndjson"})
    assert ndjson.content_type == "application/x-ndjson"
    assert [json.loads(line) for line in (await ndjson.text()).splitlines()] == items


async def test_export_refuses_customers_and_unknown_aggregates(make_client, settings, login_as):
    client = await make_client(settings)
    admin, customer = await login_as(client, "compliance"), await login_as(client)
    forbidden = await client.get(f"/api/v1/admin/events/export/user/{customer.user_id}", headers=customer.headers)
    assert forbidden.status == 403
    missing = await client.get(f"/api/v1/admin/events/export/user/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "aggregate_not_found"


async def test_replay_reports_no_drift_then_the_corrupted_field(make_client, settings, login_as, database_url):
    client = await make_client(settings)
    admin, customer = await login_as(client, "admin"), await login_as(client)
    url = f"/api/v1/admin/events/replay/user/{customer.user_id}"
    clean = await (await client.post(url, headers=admin.headers)).json()
    assert clean["drift"] == [] and clean["chain_valid"] is True and clean["events"] >= 2
    await execute(database_url, "UPDATE users SET status = 'suspended' WHERE id = :id", id=customer.user_id)
    drifted = await (await client.post(url, headers=admin.headers)).json()
    assert drifted["drift"] == [{"field": "status", "stored": "suspended", "replayed": "active"}]


async def test_replay_needs_admin(make_client, settings, login_as):
    client = await make_client(settings)
    compliance = await login_as(client, "compliance")
    response = await client.post(f"/api/v1/admin/events/replay/user/{compliance.user_id}", headers=compliance.headers)
    assert response.status == 403


async def test_the_store_refuses_update_and_delete(database_url):
    engine = create_engine(database_url)
    async with unit_of_work(session_factory(engine)) as session:
        await audit.append(session, "append_only_test", uuid.uuid4(), "thing.happened", {"n": 1})
    for statement in ("UPDATE audit_events SET type = 'x' WHERE aggregate_type = 'append_only_test'",
                      "DELETE FROM audit_events WHERE aggregate_type = 'append_only_test'"):
        with pytest.raises(Exception, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    await engine.dispose()


async def test_tampering_is_found_by_replay_and_by_audit_verify(make_client, settings, login_as, database_url, capsys):
    aggregate = str(uuid.uuid4())
    engine = create_engine(database_url)
    async with unit_of_work(session_factory(engine)) as session:
        for n in range(3):
            await audit.append(session, "tamper_test", aggregate, "thing.happened", {"n": n})
    await engine.dispose()
    arguments = argparse.Namespace(file=None, aggregate_type="tamper_test")
    assert await asyncio.to_thread(verify, settings, arguments) == 0
    # Only a superuser bypassing the trigger can do this; the chain still tells.
    await execute(
        database_url,
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "UPDATE audit_events SET data = '{\"n\": 42}' WHERE aggregate_id = :id AND seq = 2",
        "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only",
        id=aggregate,
    )
    capsys.readouterr()
    assert await asyncio.to_thread(verify, settings, arguments) == 1
    assert f"tamper_test/{aggregate}: seq 2: hash does not match its content" in capsys.readouterr().out


async def test_audit_verify_reads_an_export_file(make_client, settings, login_as, tmp_path):
    client = await make_client(settings)
    admin = await login_as(client, "admin")
    export = await (await client.get(f"/api/v1/admin/events/export/user/{admin.user_id}", headers=admin.headers)).text()
    path = tmp_path / "export.json"
    path.write_text(export)
    assert verify(settings, argparse.Namespace(file=str(path), aggregate_type=None)) == 0
    document = json.loads(export)
    document["items"][0]["data"]["email"] = "forged@example.com"
    path.write_text(json.dumps(document))
    assert verify(settings, argparse.Namespace(file=str(path), aggregate_type=None)) == 1
