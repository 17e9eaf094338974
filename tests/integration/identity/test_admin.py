"""The admin user directory: filters and cursor pages, roles, suspension, the last-admin rule."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from identity import service
from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade_async
from tests.factories import PASSWORD, register
from tests.integration.identity.conftest import API, error_code, logged_in, login, make_admin, new_admin, new_user


@pytest.fixture
async def admin(client, database_url, redis_url):
    return await new_admin(client, database_url, redis_url)


async def list_users(client, admin, **query) -> tuple[int, dict]:
    response = await client.get(f"{API}/admin/users", params=query, headers=admin.headers)
    return response.status, await response.json()


async def test_list_filters_by_email_role_and_status_with_cursor_pages(client, admin):
    fragment = uuid.uuid4().hex[:10]
    users = [await register(client, email=f"list-{n}-{fragment}@example.com") for n in range(3)]
    response = await client.post(f"{API}/admin/users/{users[0]['id']}/role", json={"roles": ["support"]},
                                 headers=admin.headers)
    assert response.status == 200
    response = await client.post(f"{API}/admin/users/{users[1]['id']}/status", json={"status": "suspended"},
                                 headers=admin.headers)
    assert response.status == 200

    status, first = await list_users(client, admin, email=fragment.upper(), limit=2)
    assert status == 200, first
    assert len(first["items"]) == 2 and first["next_cursor"]
    status, second = await list_users(client, admin, email=fragment, limit=2, cursor=first["next_cursor"])
    assert status == 200, second
    assert second["next_cursor"] is None
    listed = [item["id"] for item in first["items"] + second["items"]]
    assert listed == [user["id"] for user in reversed(users)]  # newest first, each once
    item = first["items"][0]
    assert set(item) == {"id", "email", "display_name", "roles", "created_at", "mfa_enabled", "kyc_status", "locale",
                         "email_verified", "status", "updated_at"}

    _, by_role = await list_users(client, admin, email=fragment, role="support")
    assert [item["id"] for item in by_role["items"]] == [users[0]["id"]]
    _, by_status = await list_users(client, admin, email=fragment, status="suspended")
    assert [item["id"] for item in by_status["items"]] == [users[1]["id"]]
    _, both = await list_users(client, admin, email=fragment, role="customer", status="active")
    assert [item["id"] for item in both["items"]] == [users[2]["id"]]


async def test_cursor_pages_do_not_skip_users_created_in_the_same_instant(client, admin, database_url):
    """Users created in one transaction share created_at: the id must break the tie."""
    fragment = uuid.uuid4().hex[:10]
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for n in range(3):
                await service.register(session, f"same-{n}-{fragment}@example.com", PASSWORD, f"Same {n}")
    finally:
        await engine.dispose()
    seen, cursor = [], None
    for _ in range(3):
        status, page = await list_users(client, admin, email=fragment, limit=2, **({"cursor": cursor} if cursor else {}))
        assert status == 200, page
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"same-{n}-{fragment}@example.com" for n in range(3))


@pytest.mark.parametrize("cursor", ["garbage!!", "bm90LWpzb24", "WyJhIiwiYiJd", "WyIyMDI2IiwieCIsInkiXQ"])
async def test_a_cursor_this_api_did_not_issue_is_422(client, admin, cursor):
    status, body = await list_users(client, admin, cursor=cursor)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_cursor"


async def test_list_query_is_validated(client, admin):
    for query in ({"limit": "0"}, {"limit": "201"}, {"role": "root"}, {"status": "deleted"}):
        status, body = await list_users(client, admin, **query)
        assert status == 422, query


async def test_get_one_user(client, admin):
    user = await register(client)
    response = await client.get(f"{API}/admin/users/{user['id']}", headers=admin.headers)
    body = await response.json()
    assert response.status == 200
    assert body["email"] == user["email"] and body["status"] == "active" and body["kyc_status"] == "unverified"
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        response = await client.get(f"{API}/admin/users/{unknown}", headers=admin.headers)
        assert response.status == 404, unknown
        assert await error_code(response) == "user_not_found"


async def test_role_change_and_unknown_roles(client, admin, database_url, redis_url):
    user = await register(client)
    url = f"{API}/admin/users/{user['id']}/role"
    response = await client.post(url, json={"roles": ["support", "customer", "support"]}, headers=admin.headers)
    body = await response.json()
    assert response.status == 200, body
    assert body["roles"] == ["customer", "support"]
    # A privileged role takes a second admin (tests/integration/identity/test_role_grants.py).
    response = await client.post(url, json={"roles": ["compliance", "customer", "support", "compliance"]},
                                 headers=admin.headers)
    grant = await response.json()
    assert response.status == 202 and (grant["role"], grant["state"]) == ("compliance", "pending"), grant
    second = await new_admin(client, database_url, redis_url)
    response = await client.post(f"{API}/admin/role-grants/{grant['id']}/confirm", json={}, headers=second.headers)
    assert response.status == 200, await response.text()
    response = await client.get(f"{API}/admin/users/{user['id']}", headers=admin.headers)
    assert (await response.json())["roles"] == ["compliance", "customer", "support"]
    for roles in (["root"], [], ["customer", "superuser"]):
        response = await client.post(url, json={"roles": roles}, headers=admin.headers)
        assert response.status == 422, roles
    response = await client.post(f"{API}/admin/users/{uuid.uuid4()}/role", json={"roles": ["customer"]},
                                 headers=admin.headers)
    assert response.status == 404 and await error_code(response) == "user_not_found"


async def test_suspension_ends_sessions_and_refuses_login(make_client, fast_settings, database_url, redis_url):
    client = await make_client(fast_settings)
    admin = await new_admin(client, database_url, redis_url)
    user = await new_user(client)
    assert (await client.get(f"{API}/me", headers=user.headers)).status == 200

    response = await client.post(f"{API}/admin/users/{user.user_id}/status", json={"status": "suspended"},
                                 headers=admin.headers)
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "suspended"

    response = await client.get(f"{API}/me", headers=user.headers)
    assert response.status in (401, 403)
    assert await error_code(response) in ("session_revoked", "account_suspended")
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status == 401
    response = await login(client, user.email)
    assert response.status == 403 and await error_code(response) == "account_suspended"
    response = await login(client, user.email, "Not-the-password-1!")
    assert response.status == 401, "a wrong password does not learn the account state"

    response = await client.post(f"{API}/admin/users/{user.user_id}/status", json={"status": "active"},
                                 headers=admin.headers)
    assert response.status == 200
    assert (await login(client, user.email)).status == 200


async def test_suspension_reaches_another_api_process(make_client, settings, database_url, redis_url):
    app_a, app_b = await make_client(settings), await make_client(settings)
    admin = await new_admin(app_a, database_url, redis_url)
    user = await new_user(app_a)
    assert (await app_b.get(f"{API}/me", headers=user.headers)).status == 200  # cached on B
    response = await app_a.post(f"{API}/admin/users/{user.user_id}/status", json={"status": "suspended"},
                                headers=admin.headers)
    assert response.status == 200
    for _ in range(100):
        response = await app_b.get(f"{API}/me", headers=user.headers)
        await response.read()
        if response.status != 200:
            break
        await asyncio.sleep(0.05)
    assert response.status in (401, 403)


@pytest.fixture
async def lonely_database(postgres) -> str:
    """A database of its own, where the admins of other tests do not count."""
    name = f"virtuoz_lastadmin_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    url = postgres.url(name)
    await upgrade_async(url)
    return url


async def test_the_last_admin_keeps_the_role_and_cannot_be_suspended(make_client, settings, lonely_database,
                                                                       redis_url):
    client = await make_client(settings.model_copy(update={"database_url": lonely_database}))
    first = await new_admin(client, lonely_database, redis_url)

    response = await client.post(f"{API}/admin/users/{first.user_id}/role", json={"roles": ["customer"]},
                                 headers=first.headers)
    assert response.status == 409 and await error_code(response) == "last_admin"
    response = await client.post(f"{API}/admin/users/{first.user_id}/status", json={"status": "suspended"},
                                 headers=first.headers)
    assert response.status == 409 and await error_code(response) == "last_admin"
    me = await (await client.get(f"{API}/me", headers=first.headers)).json()
    assert "admin" in me["roles"]

    second = await new_admin(client, lonely_database, redis_url)
    response = await client.post(f"{API}/admin/users/{first.user_id}/role", json={"roles": ["customer"]},
                                 headers=second.headers)
    assert response.status == 200, await response.text()
    response = await client.post(f"{API}/admin/users/{second.user_id}/role", json={"roles": ["support"]},
                                 headers=second.headers)
    assert response.status == 409 and await error_code(response) == "last_admin"


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(make_client, settings, lonely_database,
                                                                      redis_url):
    client = await make_client(settings.model_copy(update={"database_url": lonely_database}))
    first = await new_admin(client, lonely_database, redis_url)
    second = await new_admin(client, lonely_database, redis_url)

    async def demote(actor, target):
        response = await client.post(f"{API}/admin/users/{target.user_id}/role", json={"roles": ["customer"]},
                                     headers=actor.headers)
        return response.status

    statuses = await asyncio.gather(demote(first, second), demote(second, first))
    assert sorted(statuses) in ([200, 409], [200, 403])  # the loser is either refused or no longer an admin
    engine = create_engine(lonely_database)
    try:
        async with session_factory(engine)() as session:
            assert len(await service._lock_admins(session)) == 1
    finally:
        await engine.dispose()


async def test_the_last_admin_rule_holds_in_the_service(lonely_database, redis_url, make_client, settings):
    client = await make_client(settings.model_copy(update={"database_url": lonely_database}))
    admin = await new_admin(client, lonely_database, redis_url)
    with pytest.raises(service.Conflict) as refused:
        await make_admin(lonely_database, redis_url, admin.user_id, roles=["customer"])
    assert refused.value.code == "last_admin"
    assert (await logged_in(client, admin.email)).user_id == admin.user_id
