"""Separation of duties on accounts: a privileged role (operator, compliance, admin) is granted by two
admins — one requests it, another confirms it; the list of pending grants; stale grants expire."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.factories import register
from tests.integration.identity.conftest import API, audit_events, error_code, new_admin

GRANTS = f"{API}/admin/role-grants"


@pytest.fixture
async def admins(client, database_url, redis_url):
    return await new_admin(client, database_url, redis_url), await new_admin(client, database_url, redis_url)


async def request_roles(client, admin, user_id: str, roles: list[str]):
    return await client.post(f"{API}/admin/users/{user_id}/role", json={"roles": roles}, headers=admin.headers)


async def confirm(client, admin, grant_id: str):
    return await client.post(f"{GRANTS}/{grant_id}/confirm", json={}, headers=admin.headers)


async def roles_of(client, admin, user_id: str) -> list[str]:
    response = await client.get(f"{API}/admin/users/{user_id}", headers=admin.headers)
    assert response.status == 200
    return (await response.json())["roles"]


async def replayed(client, admin, aggregate_type: str, aggregate_id: str) -> dict:
    response = await client.post(f"{API}/admin/events/replay/{aggregate_type}/{aggregate_id}", headers=admin.headers)
    body = await response.json()
    assert response.status == 200, body
    return {"drift": body["drift"], "chain_valid": body["chain_valid"]}


async def pending(client, admin, **query) -> list[dict]:
    response = await client.get(GRANTS, params={"limit": "200", **query}, headers=admin.headers)
    body = await response.json()
    assert response.status == 200, body
    return body["items"]


async def test_privileged_role_grant_needs_second_admin(client, admins, database_url):
    first, second = admins
    user = await register(client)

    response = await request_roles(client, first, user["id"], ["customer", "operator"])
    grant = await response.json()
    assert response.status == 202, grant
    assert {"id", "user_id", "role", "requested_by", "state", "created_at", "expires_at"} <= set(grant)
    assert (grant["user_id"], grant["role"], grant["requested_by"], grant["state"]) == (
        user["id"], "operator", first.user_id, "pending")
    assert grant["expires_at"] > grant["created_at"]
    assert await roles_of(client, first, user["id"]) == ["customer"]  # nothing granted yet
    assert grant["id"] in [item["id"] for item in await pending(client, second)]

    # The requester cannot confirm their own request.
    response = await confirm(client, first, grant["id"])
    assert response.status == 403 and await error_code(response) == "same_admin"
    assert await roles_of(client, first, user["id"]) == ["customer"]

    response = await confirm(client, second, grant["id"])
    confirmed = await response.json()
    assert response.status == 200, confirmed
    assert (confirmed["state"], confirmed["confirmed_by"]) == ("confirmed", second.user_id)
    assert confirmed["confirmed_at"] is not None
    assert await roles_of(client, first, user["id"]) == ["customer", "operator"]
    assert grant["id"] not in [item["id"] for item in await pending(client, second)]

    # Confirmed once: a second confirmation is a conflict, whoever sends it.
    for admin in (second, first):
        response = await confirm(client, admin, grant["id"])
        assert response.status == 409 and await error_code(response) == "invalid_state"

    events = await audit_events(database_url, "role_grant", grant["id"])
    assert [(event["type"], event["actor"]) for event in events] == [("role_grant.requested", first.user_id),
                                                                     ("role_grant.confirmed", second.user_id)]
    assert events[0]["data"]["role"] == "operator" and events[0]["data"]["user_id"] == user["id"]
    changed = [event for event in await audit_events(database_url, "user", user["id"])
               if event["type"] == "user.roles_changed"]
    assert [(event["actor"], event["data"]) for event in changed] == [
        (second.user_id, {"from": ["customer"], "to": ["customer", "operator"], "grant_id": grant["id"]})]
    # The grant and the user both rebuild from their events.
    for aggregate, aggregate_id in (("role_grant", grant["id"]), ("user", user["id"])):
        assert await replayed(client, first, aggregate, aggregate_id) == {"drift": [], "chain_valid": True}


async def test_non_privileged_changes_and_removals_apply_at_once(client, admins):
    first, _ = admins
    user = await register(client)
    response = await request_roles(client, first, user["id"], ["customer", "support"])
    assert response.status == 200, await response.text()
    assert (await response.json())["roles"] == ["customer", "support"]
    response = await request_roles(client, first, user["id"], ["customer"])
    assert response.status == 200 and (await response.json())["roles"] == ["customer"]


async def test_a_grant_request_changes_nothing_else(client, admins):
    first, _ = admins
    user = await register(client)
    for roles in (["support", "operator"],  # drops customer and adds support besides the grant
                  ["customer", "operator", "compliance"]):  # two privileged roles at once
        response = await request_roles(client, first, user["id"], roles)
        assert response.status == 422, roles
        assert await error_code(response) == "privileged_grant_alone"
    assert await roles_of(client, first, user["id"]) == ["customer"]


async def test_one_pending_grant_per_user_and_role(client, admins):
    first, second = admins
    user = await register(client)
    response = await request_roles(client, first, user["id"], ["customer", "compliance"])
    assert response.status == 202
    grant = await response.json()
    response = await request_roles(client, second, user["id"], ["customer", "compliance"])
    assert response.status == 409 and await error_code(response) == "role_grant_pending"
    assert (await response.json())["error"]["details"]["grant_id"] == grant["id"]
    # Another role for the same user is its own grant.
    response = await request_roles(client, second, user["id"], ["customer", "admin"])
    assert response.status == 202


async def test_the_grantee_cannot_confirm_their_own_grant(client, admins, database_url, redis_url):
    first, second = admins
    response = await request_roles(client, first, second.user_id, ["admin", "customer", "operator"])
    assert response.status == 202, await response.text()
    grant = await response.json()
    response = await confirm(client, second, grant["id"])
    assert response.status == 403 and await error_code(response) == "own_grant"
    third = await new_admin(client, database_url, redis_url)
    assert (await confirm(client, third, grant["id"])).status == 200


async def test_stale_grants_expire_and_cannot_be_confirmed(make_client, settings, database_url, redis_url):
    client = await make_client(settings.model_copy(update={"role_grant_expiry_hours": 0.5 / 3600}))
    first = await new_admin(client, database_url, redis_url)
    second = await new_admin(client, database_url, redis_url)
    user = await register(client)
    response = await request_roles(client, first, user["id"], ["customer", "operator"])
    assert response.status == 202
    grant = await response.json()
    await asyncio.sleep(0.6)

    # Past its deadline a grant is no longer pending, in the list or anywhere else.
    assert grant["id"] not in [item["id"] for item in await pending(client, second)]
    expired = await pending(client, second, state="expired")
    assert [item["state"] for item in expired if item["id"] == grant["id"]] == ["expired"]
    response = await confirm(client, second, grant["id"])
    assert response.status == 409 and await error_code(response) == "role_grant_expired"
    assert await roles_of(client, second, user["id"]) == ["customer"]
    events = await audit_events(database_url, "role_grant", grant["id"])
    assert [event["type"] for event in events] == ["role_grant.requested", "role_grant.expired"]
    assert await replayed(client, second, "role_grant", grant["id"]) == {"drift": [], "chain_valid": True}
    # A stale grant does not block a fresh request.
    response = await request_roles(client, first, user["id"], ["customer", "operator"])
    assert response.status == 202 and (await response.json())["id"] != grant["id"]


async def test_grants_are_listed_newest_first_by_state_and_user(client, admins):
    first, second = admins
    users = [await register(client) for _ in range(3)]
    grants = []
    for user in users:
        response = await request_roles(client, first, user["id"], ["customer", "compliance"])
        grants.append(await response.json())
    listed = [item["id"] for item in await pending(client, second)]
    ours = [grant["id"] for grant in reversed(grants)]
    assert [grant_id for grant_id in listed if grant_id in ours] == ours
    assert [item["id"] for item in await pending(client, second, user_id=users[1]["id"])] == [grants[1]["id"]]
    await confirm(client, second, grants[0]["id"])
    assert [item["id"] for item in await pending(client, second, user_id=users[0]["id"], state="confirmed")] == [
        grants[0]["id"]]
    response = await client.get(GRANTS, params={"user_id": users[2]["id"], "limit": "1"}, headers=second.headers)
    page = await response.json()
    assert [item["id"] for item in page["items"]] == [grants[2]["id"]] and page["next_cursor"] is None
    for query in ({"state": "unknown"}, {"limit": "0"}, {"cursor": "garbage!!"}):
        response = await client.get(GRANTS, params=query, headers=second.headers)
        assert response.status == 422, query


async def test_only_admins_see_and_confirm_grants(client, admins, login_as):
    first, _ = admins
    user = await register(client)
    grant = await (await request_roles(client, first, user["id"], ["customer", "operator"])).json()
    for role in ("operator", "compliance", "customer"):
        someone = await login_as(client, role)
        assert (await client.get(GRANTS, headers=someone.headers)).status == 403
        assert (await client.post(f"{GRANTS}/{grant['id']}/confirm", json={}, headers=someone.headers)).status == 403
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        response = await confirm(client, first, unknown)
        assert response.status == 404 and await error_code(response) == "role_grant_not_found"


async def test_two_confirmations_at_once_grant_the_role_once(client, admins, database_url, redis_url):
    first, second = admins
    third = await new_admin(client, database_url, redis_url)
    user = await register(client)
    grant = await (await request_roles(client, first, user["id"], ["customer", "admin"])).json()
    answers = await asyncio.gather(confirm(client, second, grant["id"]), confirm(client, third, grant["id"]))
    assert sorted(answer.status for answer in answers) == [200, 409]
    events = await audit_events(database_url, "role_grant", grant["id"])
    assert [event["type"] for event in events] == ["role_grant.requested", "role_grant.confirmed"]
    changed = [event for event in await audit_events(database_url, "user", user["id"])
               if event["type"] == "user.roles_changed"]
    assert [event["data"]["to"] for event in changed] == [["admin", "customer"]]
