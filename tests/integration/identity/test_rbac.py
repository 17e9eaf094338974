"""Access control on every route, the RBAC cache across API processes, and CSRF for cookies."""

from __future__ import annotations

import uuid

from api.access import Access
from api.keys import IDENTITY_CACHE, ROUTE_TABLES
from api.registry import PATH_PARAM
from tests.factories import PASSWORD, register
from tests.integration.identity.conftest import API, error_code, login, new_admin, new_user, poll


def served_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route the live router serves: root app and mounted sub-apps."""
    served = set()
    apps = [app]
    while apps:
        current = apps.pop()
        for resource in current.router.resources():
            if hasattr(resource, "_app"):  # a mounted sub-application
                apps.append(resource._app)
                continue
            if resource.name == "docs_assets":  # the Swagger UI's static files
                continue
            for route in resource:
                if route.method != "HEAD":
                    served.add((route.method, resource.canonical))
    return served


def declared_specs(app) -> dict[tuple[str, str], object]:
    return {(spec.method, prefix + spec.path): spec for prefix, table in app[ROUTE_TABLES] for spec in table.specs}


async def test_anonymous_request_is_401_json(client):
    response = await client.get(f"{API}/me")
    assert response.status == 401
    assert response.content_type == "application/json"
    assert await error_code(response) == "unauthorized"


async def test_customer_on_an_admin_route_is_403_json(client):
    user = await new_user(client)
    response = await client.get(f"{API}/admin/users", headers=user.headers)
    assert response.status == 403
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == "forbidden"
    assert body["error"]["details"] == {"required_roles": ["admin"]}


async def test_every_served_route_declares_its_access(client):
    served = served_routes(client.app)
    specs = declared_specs(client.app)
    assert served, "the router is empty"
    undeclared = served - set(specs)
    assert not undeclared, f"served without a RouteSpec: {sorted(undeclared)}"
    for key in served:
        assert isinstance(specs[key].access, Access), key


async def test_every_non_public_route_refuses_anonymous_callers(client):
    specs = declared_specs(client.app)
    checked = []
    for (method, path), spec in sorted(specs.items()):
        if spec.access.public:
            continue
        concrete = PATH_PARAM.sub(lambda _: str(uuid.uuid4()), path)
        response = await client.request(method, concrete, json={} if method == "POST" else None)
        assert response.status == 401, f"{method} {path}: {response.status}"
        assert await error_code(response) == "unauthorized", f"{method} {path}"
        checked.append(path)
    assert f"{API}/admin/users" in checked and f"{API}/me" in checked


async def test_rbac_cache_invalidation_is_for_admins(client, database_url, redis_url):
    admin = await new_admin(client, database_url, redis_url)
    customer = await new_user(client)
    response = await client.post(f"{API}/auth/rbac-cache/invalidate", json={}, headers=admin.headers)
    assert response.status == 200 and await response.json() == {"ok": True}
    response = await client.post(f"{API}/auth/rbac-cache/invalidate", json={"user_id": customer.user_id},
                                 headers=admin.headers)
    assert response.status == 200
    response = await client.post(f"{API}/auth/rbac-cache/invalidate", json={}, headers=customer.headers)
    assert response.status == 403 and await error_code(response) == "forbidden"


async def test_promotion_on_one_api_process_reaches_another(make_client, settings, database_url, redis_url):
    app_a, app_b = await make_client(settings), await make_client(settings)
    admin = await new_admin(app_a, database_url, redis_url)
    user = await new_user(app_a)
    user_id = uuid.UUID(user.user_id)

    refused = await app_b.get(f"{API}/admin/users", headers=user.headers)
    assert refused.status == 403  # app B now caches the user's roles: customer
    cache_b = app_b.app[IDENTITY_CACHE]
    assert cache_b.access[user_id][0] == ["customer"]

    response = await app_a.post(f"{API}/admin/users/{user.user_id}/role", json={"roles": ["customer", "admin"]},
                                headers=admin.headers)
    assert response.status == 202, await response.text()  # a privileged role: a second admin confirms it
    second = await new_admin(app_a, database_url, redis_url)
    grant_id = (await response.json())["id"]
    response = await app_a.post(f"{API}/admin/role-grants/{grant_id}/confirm", json={}, headers=second.headers)
    assert response.status == 200, await response.text()

    # the invalidation travels over Redis pub/sub and drops B's cached entry...
    async def dropped_on_b() -> bool:
        return user_id not in cache_b.access

    assert await poll(dropped_on_b)

    # ...so the admin route works on B right after
    async def admin_route_works() -> bool:
        response = await app_b.get(f"{API}/admin/users", headers=user.headers)
        await response.read()
        return response.status == 200

    assert await poll(admin_route_works)


async def test_cookie_post_from_a_foreign_origin_is_refused(make_client, settings):
    client = await make_client(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    user = await register(client)
    response = await login(client, user["email"])
    token = (await response.json())["access_token"]
    cookie = {"Cookie": f"access_token={token}"}

    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": PASSWORD}, headers={**cookie, "Origin": "https://evil.example"})
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "csrf_origin_refused"
    assert body["error"]["details"] == {"origin": "https://evil.example"}
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": PASSWORD}, headers={**cookie, "Origin": "null"})
    assert response.status == 403

    allowed = [
        {**cookie, "Origin": "https://app.example"},  # a configured CORS origin
        {**cookie, "Origin": str(client.make_url("")).rstrip("/")},  # the API's own origin
        {**cookie},  # no Origin at all (not a browser cross-site request)
        {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},  # Bearer never rides along
    ]
    for headers in allowed:
        response = await client.post(f"{API}/auth/mfa/enroll", json={"password": PASSWORD}, headers=headers)
        assert response.status == 200, (headers, await response.text())
    # safe methods are not state-changing: a cross-site GET with the cookie is served
    response = await client.get(f"{API}/me", headers={**cookie, "Origin": "https://evil.example"})
    assert response.status == 200


async def test_refresh_by_cookie_from_a_foreign_origin_is_refused(client):
    user = await register(client)
    response = await login(client, user["email"])
    refresh = (await response.json())["refresh_token"]
    response = await client.post(f"{API}/auth/refresh", headers={"Cookie": f"refresh_token={refresh}",
                                                                  "Origin": "https://evil.example"})
    assert response.status == 403 and await error_code(response) == "csrf_origin_refused"
    # the token was not rotated: it still works from a legitimate caller
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh},
                                 headers={"Origin": "https://evil.example"})  # in the body: not ambient
    assert response.status == 200, await response.text()
