"""Real refusals answer what the OpenAPI document promises: a request refused with a status and a
code finds that code listed under that status of its operation. Every operation naming an object by
id answers an unknown id with a 404 it documents; the other refusals are sampled domain by domain."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import OPENAPI
from identity.models import ROLES
from tests.factories import LoggedIn

API = "/api/v1"
HTTP_METHODS = {"get", "post", "patch", "put", "delete"}
OBJECT_ID = re.compile(r"{(\w+_id)}")
# Path parameters that are not object ids get a value that exists, so that the id is what is unknown.
EXISTING = {"aggregate_type": "user", "jurisdiction": "CA"}
TICKETS = f"{API}/helpdesk/tickets"
# Refusals a route answers but does not declare yet, each in a route table this suite does not own
# (api/auth declares its own): tolerated one by one, so that any other undeclared 404 still fails.
def documented(client: TestClient, method: str, template: str, status: int) -> list[str]:
    """The codes the document lists for ``status`` of the operation (none when it lists no such status)."""
    responses = client.app[OPENAPI]["paths"][template][method.lower()]["responses"]
    return responses.get(str(status), {}).get("x-error-codes", [])


async def refused(client: TestClient, method: str, template: str, expected: tuple[int, str], *,
                  user: LoggedIn | None = None, path: dict[str, str] | None = None, **request: Any) -> dict[str, Any]:
    """Send the request; it is refused with ``expected`` (status, code), which the document lists."""
    headers = {**(user.headers if user else {}), **request.pop("headers", {})}
    response = await client.request(method, template.format(**(path or {})), headers=headers, **request)
    body = await response.json()
    assert (response.status, body["error"]["code"]) == expected, body
    codes = documented(client, method, template, response.status)
    assert expected[1] in codes, f"{method} {template} answers {expected}; the document lists {codes}"
    return body["error"]


def object_id_operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every operation with an object id in its path that can be
    sent without a body of its own: a required body would be refused (422) before the id is looked up."""
    found = []
    for template, item in client.app[OPENAPI]["paths"].items():
        if not OBJECT_ID.search(template):
            continue
        for method, operation in item.items():
            if method in HTTP_METHODS and not operation.get("requestBody", {}).get("required", False):
                found.append((method.upper(), template, operation))
    return found


def filled(template: str, object_id: str) -> str:
    return re.sub(r"{(\w+)}", lambda match: EXISTING.get(match.group(1), object_id), template)


async def test_an_unknown_object_id_is_a_documented_404(client, login_as) -> None:
    everyone = await login_as(client, *ROLES)  # every role: no 403 comes before the lookup
    operations = object_id_operations(client)
    assert len(operations) >= 15, operations  # the walk reaches the id routes of every domain
    undocumented: list[str] = []
    for method, template, operation in operations:
        body = {"json": {}} if "requestBody" in operation else {}
        # A text that is no UUID names nothing (the router's check); a fresh UUID names nothing stored
        # (the service's lookup), unless the route answers an empty result for it (a user's freezes).
        for object_id in ("not-an-id", str(uuid.uuid4())):
            response = await client.request(method, filled(template, object_id), headers=everyone.headers, **body)
            if response.status < 300 and object_id != "not-an-id":
                continue
            answer = await response.json()
            code = answer.get("error", {}).get("code")
            if response.status != 404 or code not in documented(client, method, template, 404):
                undocumented.append(f"{method} {template} ({object_id}): {response.status} {code}")
    assert not undocumented, "\n".join(undocumented)


async def test_helpdesk_refusals_are_documented(client, login_as) -> None:
    customer, staff = await login_as(client), await login_as(client, "support")
    created = await client.post(TICKETS, json={"subject": "Stuck", "body": "My deposit is missing."},
                                headers=customer.headers)
    assert created.status == 201, await created.text()
    ticket = {"ticket_id": (await created.json())["id"]}
    await refused(client, "GET", f"{TICKETS}/{{ticket_id}}", (404, "ticket_not_found"), user=customer,
                  path={"ticket_id": str(uuid.uuid4())})
    await refused(client, "GET", TICKETS, (403, "staff_only_filter"), user=customer, params={"breached": "true"})
    await refused(client, "GET", TICKETS, (422, "invalid_cursor"), user=customer, params={"cursor": "not-ours"})
    links = f"{TICKETS}/{{ticket_id}}/context-links"
    link = {"kind": "url", "ref": "https://example.com/orders/42"}
    first = await client.post(links.format(**ticket), json=link, headers=staff.headers)
    assert first.status == 201, await first.text()
    await refused(client, "POST", links, (409, "context_link_exists"), user=staff, path=ticket, json=link)
    await refused(client, "POST", links, (422, "invalid_url"), user=staff, path=ticket,
                  json={"kind": "url", "ref": "ftp://example.com/x"})
    await refused(client, "POST", links, (422, "unknown_reference"), user=staff, path=ticket,
                  json={"kind": "withdrawal", "ref": str(uuid.uuid4())})
    await refused(client, "POST", f"{TICKETS}/{{ticket_id}}/transition", (409, "invalid_transition"), user=staff,
                  path=ticket, json={"to": "closed"})


async def test_cms_refusals_are_documented(client, login_as) -> None:
    admin, support = await login_as(client, "admin"), await login_as(client, "support")
    slug = f"refusals-{uuid.uuid4().hex[:8]}"
    draft = f"{API}/admin/cms/{{kind}}/{{slug}}/draft"
    saved = await client.post(draft.format(kind="help", slug=slug), json={"title": "T", "body": "B"},
                              headers=admin.headers)
    assert saved.status == 201, await saved.text()
    help_article = {"kind": "help", "slug": slug}
    await refused(client, "POST", draft, (422, "slug_reserved"), user=admin,
                  path={"kind": "email", "slug": "deliveries"}, json={"title": "T", "body": "B",
                                                                       "metadata": {"subject": "S"}})
    await refused(client, "POST", draft, (404, "cms_kind_not_found"), user=admin,
                  path={"kind": "poster", "slug": slug}, json={"title": "T", "body": "B"})
    await refused(client, "POST", draft, (403, "forbidden"), user=support, path={"kind": "legal", "slug": slug},
                  json={"title": "T", "body": "B"})
    publish = f"{API}/admin/cms/{{kind}}/{{slug}}/publish"
    await refused(client, "POST", publish, (409, "version_not_latest"), user=admin, path=help_article,
                  json={"version": 7})
    await refused(client, "POST", publish, (409, "review_required"), user=admin, path=help_article, json={})
    await refused(client, "POST", f"{API}/admin/cms/{{kind}}/{{slug}}/rollback", (409, "version_never_published"),
                  user=admin, path=help_article, json={"version": 1})
    await refused(client, "POST", f"{API}/admin/cms/{{kind}}/{{slug}}/transition", (409, "illegal_transition"),
                  user=admin, path=help_article, json={"to": "archived"})
    await refused(client, "GET", f"{API}/cms/help/{{slug}}", (404, "cms_document_not_found"), path={"slug": slug})
    template = f"welcome-{uuid.uuid4().hex[:8]}"
    saved = await client.post(draft.format(kind="email", slug=template), headers=admin.headers,
                              json={"title": "Welcome", "body": "Hello {{ name }}", "metadata": {"subject": "Hi"}})
    assert saved.status == 201, await saved.text()
    await refused(client, "POST", f"{API}/cms/email/{{slug}}/preview", (422, "missing_template_variable"),
                  user=admin, path={"slug": template}, json={"variables": {}})


async def test_custody_and_back_office_refusals_are_documented(client, login_as) -> None:
    customer, other, admin = await login_as(client), await login_as(client), await login_as(client, "admin")
    allocate = f"{API}/platform/crypto/address/allocate"
    await refused(client, "POST", allocate, (403, "forbidden_user_id"), user=customer,
                  json={"chain": "ethereum", "asset": "ETH", "user_id": str(other.user_id)})
    await refused(client, "POST", allocate, (422, "unknown_chain"), user=customer,
                  json={"chain": "no-such-chain", "asset": "ETH"})
    await refused(client, "GET", f"{API}/wallet/activity", (422, "unknown_currency"), user=customer,
                  params={"currency": "ZZZ9"})
    await refused(client, "GET", f"{API}/wallet/deposits", (422, "invalid_cursor"), user=customer,
                  params={"cursor": "not-ours"})
    await refused(client, "GET", f"{API}/admin/users/{{user_id}}", (404, "user_not_found"), user=admin,
                  path={"user_id": str(uuid.uuid4())})
    await refused(client, "POST", f"{API}/admin/users/{{user_id}}/freezes/{{freeze_id}}/lift", (404, "freeze_not_found"),
                  user=admin, path={"user_id": str(customer.user_id), "freeze_id": str(uuid.uuid4())},
                  json={"reason": "checked"})
    await refused(client, "POST", f"{API}/admin/events/replay/{{aggregate_type}}/{{aggregate_id}}",
                  (422, "unknown_aggregate_type"), user=admin,
                  path={"aggregate_type": "spaceship", "aggregate_id": str(uuid.uuid4())})
    await refused(client, "POST", f"{API}/platform/storage/shard-path", (422, "invalid_storage_key"), user=admin,
                  json={"key": "../etc"})
    await refused(client, "POST", f"{API}/platform/i18n/message", (404, "message_not_found"), user=admin,
                  json={"key": "no.such.message", "locale": "en"})
    # What every route answers alike is documented too: no login, a body that is not JSON.
    client.session.cookie_jar.clear()  # the logins above left their access cookie in the client
    await refused(client, "GET", f"{API}/wallet/activity", (401, "unauthorized"))
    await refused(client, "POST", allocate, (415, "unsupported_media_type"), user=customer, data="chain=ethereum",
                  headers={"Content-Type": "text/plain"})


async def test_compliance_refusals_are_documented(client, login_as) -> None:
    officer = await login_as(client, "compliance")
    await refused(client, "POST", f"{API}/compliance/reports", (422, "unknown_jurisdiction"), user=officer,
                  json={"jurisdiction": "ZZ", "type": "large_transactions",
                        "period_start": "2026-01-01T00:00:00Z", "period_end": "2026-02-01T00:00:00Z"})
    await refused(client, "GET", f"{API}/admin/transactions", (422, "currency_required"), user=officer,
                  params={"amount_min": "1"})
    await refused(client, "POST", f"{API}/admin/kyc/{{user_id}}/decision", (403, "own_kyc_case"), user=officer,
                  path={"user_id": str(officer.user_id)}, json={"decision": "approved", "reason": "me"})
    await refused(client, "POST", f"{API}/admin/transactions/{{tx_id}}/reconcile", (404, "transaction_not_found"),
                  user=officer, path={"tx_id": str(uuid.uuid4())})
