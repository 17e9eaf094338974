"""Prometheus metrics of one API process, in a registry of its own (two apps never collide)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from core.time import utcnow
from custody.deposits.queries import ScannerPosition
from custody.treasury.hot_cold_models import HotWalletLevel

UNMATCHED = "unmatched"


def route_template(request: web.Request) -> str:
    """The route's template (``/api/v1/escrow/{escrow_id}``), never the raw path: a label per
    unknown URL would let any client grow the metric without bound."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.latency = Histogram(
            "virtuoz_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "virtuoz_queue_depth", "Messages waiting in each Dramatiq queue.", ["queue"], registry=self.registry
        )
        self.dependency_up = Gauge(
            "virtuoz_dependency_up", "1 when the dependency answered the last readiness check.", ["dependency"],
            registry=self.registry,
        )

        # Deposits: what each chain's scanner last wrote into its cursor.
        self.scanner_height = Gauge("virtuoz_scanner_height", "The last block the chain's scanner processed.",
                                    ["chain"], registry=self.registry)
        self.scanner_lag = Gauge("virtuoz_scanner_lag_blocks", "Blocks between the node's head and the scanner, "
                                 "as the scanner last saw them.", ["chain"], registry=self.registry)
        self.scanner_idle = Gauge("virtuoz_scanner_last_check_age_seconds", "Seconds since the scanner last asked "
                                  "its node for the head (alert when it grows: the scanner is down).", ["chain"],
                                  registry=self.registry)

        # Treasury: each hot wallet against its levels, as the treasury worker's last check saw it.
        self.hot_balance = Gauge("virtuoz_treasury_hot_balance_minor", "The hot wallet's balance at the treasury's "
                                 "last check, minor units.", ["chain", "asset"], registry=self.registry)
        self.hot_below_floor = Gauge("virtuoz_treasury_hot_below_floor", "1 while the hot wallet is below its floor "
                                     "(a refill from the cold wallet is needed).", ["chain", "asset"],
                                     registry=self.registry)
        self.hot_above_ceiling = Gauge("virtuoz_treasury_hot_above_ceiling", "1 while the hot wallet is above its "
                                       "ceiling (its surplus is on its way to the cold wallet).", ["chain", "asset"],
                                       registry=self.registry)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        self.latency.labels(request.method, route_template(request), str(status)).observe(seconds)

    def set_scanner_positions(self, positions: dict[str, ScannerPosition]) -> None:
        now = utcnow()
        for chain, position in positions.items():
            if position.height is not None:
                self.scanner_height.labels(chain).set(position.height)
            if position.lag is not None:
                self.scanner_lag.labels(chain).set(position.lag)
            self.scanner_idle.labels(chain).set(max(0.0, (now - position.checked_at).total_seconds()))

    def set_hot_levels(self, levels: list[HotWalletLevel]) -> None:
        for level in levels:
            self.hot_balance.labels(level.chain, level.asset).set(level.balance)
            self.hot_below_floor.labels(level.chain, level.asset).set(1 if level.state == "below_floor" else 0)
            self.hot_above_ceiling.labels(level.chain, level.asset).set(1 if level.state == "above_ceiling" else 0)

    def set_queue_depths(self, depths: dict[str, int]) -> None:
        for queue, depth in depths.items():
            self.queue_depth.labels(queue).set(depth)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
