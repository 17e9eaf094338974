"""Operational routes: liveness, readiness, metrics, status and the API's own description."""

from __future__ import annotations

from aiohttp import web

from api import probes as service
from api.access import PUBLIC, Access
from api.client_ip import client_address
from api.http import json_response
from api.keys import (
    BROKER,
    CHAINS,
    ENGINE,
    LIVE,
    METRICS,
    OPENAPI,
    PROBE_CACHE,
    REDIS,
    SESSIONS,
    SETTINGS,
    STARTED_AT,
)
from api.ops.schemas import HealthOut, ReadinessOut, StatusOut
from api.registry import Routes
from core.errors import Forbidden

root = Routes(tag="operations")
v1 = Routes(tag="operations")

METRICS_ACCESS = Access(public=True, note="IP allowlist (VIRTUOZ_METRICS_ALLOWLIST)")


def _dependencies(request: web.Request) -> service.Dependencies:
    app = request.config_dict
    return service.Dependencies(engine=app[ENGINE], sessions=app[SESSIONS], redis=app[REDIS], chains=app[CHAINS],
                                broker=app[BROKER])


@root.get("/health", access=PUBLIC, responses={200: HealthOut})
async def health(request: web.Request) -> HealthOut:
    """Process liveness: 200 while the process serves requests."""
    return HealthOut()


@root.get("/readiness", access=PUBLIC, responses={200: ReadinessOut, 503: ReadinessOut})
async def readiness(request: web.Request) -> web.Response:
    """Dependency readiness: 200 when every dependency of the readiness policy answers, else 503 naming them."""
    report = await _readiness(request)
    return json_response(report, status=200 if report.status == "ready" else 503)


async def _readiness(request: web.Request) -> ReadinessOut:
    """The readiness report (one probe per cache period), its checks copied into the dependency gauges."""
    policy, deps = request.config_dict[LIVE].readiness_policy, _dependencies(request)
    report = await request.config_dict[PROBE_CACHE].get(f"readiness:{policy.model_dump_json()}",
                                                        lambda: service.check_readiness(deps, policy))
    metrics = request.config_dict[METRICS]
    for check in report.checks:
        metrics.dependency_up.labels(check.name).set(1 if check.ok else 0)
    return report


@root.get("/metrics", access=METRICS_ACCESS, responses={200: "text/plain"}, errors={403: ("metrics_forbidden",)})
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: request latency by route template, process and queue metrics."""
    settings = request.config_dict[SETTINGS]
    # The client's address, not the peer's: behind a local proxy every peer is loopback.
    remote = client_address(request)
    if remote is None or not any(remote in network for network in settings.metrics_networks):
        raise Forbidden("Metrics are not served to this address.", code="metrics_forbidden")
    registry = request.config_dict[METRICS]
    registry.set_queue_depths(await service.queues_waiting(_dependencies(request), settings.readiness.timeout_seconds))
    await _readiness(request)  # a scrape alone keeps virtuoz_dependency_up current
    timeout = settings.readiness.timeout_seconds
    registry.set_scanner_positions(await service.scanner_positions(_dependencies(request), timeout))
    registry.set_hot_levels(await service.hot_levels(_dependencies(request), timeout))
    registry.set_withdrawals_in_flight(await service.withdrawals_in_flight(_dependencies(request), timeout))
    return web.Response(body=registry.exposition(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


@v1.get("/status", access=PUBLIC, responses={200: StatusOut})
async def status(request: web.Request) -> StatusOut:
    """API status: version, environment, uptime, chain heights and queue depths."""
    app, deps = request.config_dict, _dependencies(request)
    return await app[PROBE_CACHE].get("status", lambda: service.current_status(deps, app[SETTINGS], app[STARTED_AT]))


@v1.get("/openapi.json", access=PUBLIC, responses={200: "application/json"})
async def openapi(request: web.Request) -> web.Response:
    """This OpenAPI 3.1 document."""
    return json_response(request.config_dict[OPENAPI])


@v1.get("/openapi-ui.json", access=PUBLIC, responses={200: "application/json"})
async def openapi_ui(request: web.Request) -> web.Response:
    """The same OpenAPI document, for the Swagger UI at /docs."""
    return json_response(request.config_dict[OPENAPI])
