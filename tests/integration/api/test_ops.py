"""Operational routes against the real PostgreSQL and Redis of this test worker."""

from __future__ import annotations

import re
from datetime import timedelta

from api.keys import OPENAPI
from core.heartbeats import record_heartbeat
from core.db import create_engine, session_factory, unit_of_work
from core.time import utcnow
from tests.factories import DESTINATION, make_funded_user, make_withdrawal


async def test_health(client):
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readiness_ready_names_every_check(client):
    response = await client.get("/readiness")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ready" and body["failing"] == []
    assert {check["name"] for check in body["checks"]} == {"database", "redis"}


async def test_readiness_requires_fresh_worker_heartbeats(make_client, settings, database_url, caplog):
    policy = settings.readiness.model_copy(update={"workers": ["custody", "readiness-test-worker"]})
    client = await make_client(settings.model_copy(update={"readiness": policy}))
    engine = create_engine(database_url)
    async with unit_of_work(session_factory(engine)) as session:
        await record_heartbeat(session, "custody")
    await engine.dispose()
    response = await client.get("/readiness")
    body = await response.json()
    assert response.status == 503
    assert body["failing"] == ["workers"]
    assert {"name": "workers", "ok": False} in body["checks"]
    logged = next(record.getMessage() for record in caplog.records if "workers is failing" in record.getMessage())
    assert "readiness-test-worker" in logged and "custody" not in logged.split("from ")[1]


async def test_status_reports_version_environment_uptime_and_queues(client):
    response = await client.get("/api/v1/status")
    body = await response.json()
    assert response.status == 200
    assert body["service"] == "virtuoz" and body["environment"] == "test"
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    assert body["uptime_seconds"] >= 0 and body["time"].endswith("Z")
    assert body["chains"] == []
    assert set(body["queues"]) == {"allocator", "custody", "deposits", "signer", "compliance", "notifications",
                                   "reports", "treasury", "webhooks"}
    assert all(isinstance(depth, int) for depth in body["queues"].values())


async def test_metrics_histogram_uses_route_templates(client):
    await client.get("/api/v1/status")
    await client.get("/no/such/path/123")
    await client.get("/no/such/path/456")
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'virtuoz_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/status",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/path" not in text
    assert "process_resident_memory_bytes" in text
    assert 'virtuoz_queue_depth{queue="custody"}' in text


async def test_metrics_refused_outside_the_allowlist(make_client, settings):
    client = await make_client(settings.model_copy(update={"metrics_allowlist": ["10.0.0.0/8"]}))
    response = await client.get("/metrics")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "metrics_forbidden"


async def test_metrics_behind_a_local_proxy_judge_the_client_not_the_proxy(make_client, settings):
    # Behind a reverse proxy on the same host every peer is loopback, which the allowlist admits.
    client = await make_client(settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]}))
    response = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "metrics_forbidden"
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})).status == 200


async def test_openapi_is_valid_3_1(client):
    response = await client.get("/api/v1/openapi.json")
    document = await response.json()
    assert document["openapi"] == "3.1.0"  # valid 3.1: tests/unit/api/test_openapi_contract.py
    ui = await client.get("/api/v1/openapi-ui.json")
    assert await ui.json() == document


async def test_openapi_covers_every_route_in_the_router(client):
    """Walks the live router (root and /api/v1): a route missing from the document fails here."""
    document = client.app[OPENAPI]
    served = set()
    apps = [client.app]
    while apps:
        app = apps.pop()
        for resource in app.router.resources():
            if hasattr(resource, "_app"):  # a mounted sub-application: walk its routes too
                apps.append(resource._app)
                continue
            if resource.name == "docs_assets":  # the Swagger UI's static files
                continue
            for route in resource:
                if route.method != "HEAD":
                    served.add((route.method.lower(), resource.canonical))
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert served, "the router is empty"
    assert served == documented


async def test_docs_serve_swagger_ui_from_local_assets(client):
    page = await client.get("/docs")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert not re.search(r"""(src|href)=["']https?://""", html), "the page must not load from a CDN"
    for asset in re.findall(r"""(?:src|href)=["'](/docs/[^"']+)""", html):
        response = await client.get(asset)
        assert response.status == 200, asset
    init = await (await client.get("/docs/init.js")).text()
    assert '"validatorUrl": null' in init and "/api/v1/openapi-ui.json" in init


async def test_docs_can_be_disabled(make_client, settings):
    client = await make_client(settings.model_copy(update={"docs_enabled": False}))
    assert (await client.get("/docs")).status == 404
    assert "/docs" not in client.app[OPENAPI]["paths"]


async def test_metrics_show_withdrawals_in_flight_and_the_oldest_of_each_state(client, database_url):
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        user_id = await make_funded_user(sessions, "ETH:10", tag="stuck", display_name="Stuck")
        long_ago = utcnow() - timedelta(hours=2)
        await make_withdrawal(sessions, user_id, "ethereum", amount=10**17, state="broadcast", nonce=1,
                              hot_wallet=DESTINATION, broadcast_at=long_ago, alert="fee_above_cap")
    finally:
        await engine.dispose()

    text = await (await client.get("/metrics")).text()
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("virtuoz_withdrawals")}
    assert gauges['virtuoz_withdrawals_in_flight{state="broadcast"}'] >= 1
    assert gauges['virtuoz_withdrawals_oldest_in_flight_seconds{state="broadcast"}'] >= 2 * 3600 - 60
    assert gauges['virtuoz_withdrawals_waiting_on_fees{state="broadcast"}'] >= 1
    assert {f'virtuoz_withdrawals_in_flight{{state="{state}"}}' for state in ("approved", "signing", "signed")} <= set(gauges)


async def test_a_scrape_alone_reports_dependencies_and_the_domain_counters(client):
    # Nobody asked /readiness: the dependency gauges are current anyway, and the counters the
    # domains keep in the process's default registry are served beside the HTTP ones.
    text = await (await client.get("/metrics")).text()
    assert 'virtuoz_dependency_up{dependency="database"} 1.0' in text
    assert "# TYPE virtuoz_withdrawal_events_total counter" in text
