"""Prometheus metrics of one API process, in a registry of its own (two apps never collide).

Under several API workers (`virtuoz api` with VIRTUOZ_API_WORKERS > 1) each worker writes its values
to files in a directory the parent made for them (prometheus-client's multiprocess mode, chosen by
PROMETHEUS_MULTIPROC_DIR in the worker's environment before prometheus_client is imported), and
/metrics, whichever worker answers it, reads every worker's files: counters and histograms summed,
gauges as the last value any live worker set; the domains' counters in each worker's default
registry are in those files too. Per-process collectors (CPU, memory, file descriptors) cannot be
summed and are left out there. A single API process serves its default registry beside its own.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from core.metrics import Registries
from core.time import utcnow
from custody.deposits.queries import ScannerPosition
from custody.treasury.hot_cold_models import HotWalletLevel
from custody.withdrawals.queries import InFlight

UNMATCHED = "unmatched"
LATEST = "livemostrecent"  # a dead worker's last readings go with it (multiprocess.mark_process_dead)


def route_template(request: web.Request) -> str:
    """The route's template (``/api/v1/escrow/{escrow_id}``), never the raw path: a label per
    unknown URL would let any client grow the metric without bound."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


class HttpMetrics:
    """``multiprocess_dir``: this process is API worker number ``worker`` of a parent that collects
    every worker's values in that directory (None: the only process, as in tests)."""

    def __init__(self, multiprocess_dir: Path | None = None, worker: int = 0) -> None:
        if multiprocess_dir is not None and not getattr(values.ValueClass, "_multiprocess", False):
            # Values would stay in this process's memory and /metrics would read an empty directory.
            raise RuntimeError("API worker metrics need PROMETHEUS_MULTIPROC_DIR set before prometheus_client "
                               "is imported (virtuoz api sets it for its workers)")
        self.multiprocess_dir = multiprocess_dir
        self.worker = str(worker)
        self.registry = CollectorRegistry()
        self.worker_requests = Counter(
            "virtuoz_api_worker_requests_total",
            "Requests answered by each API worker process (0 … VIRTUOZ_API_WORKERS - 1): how evenly the kernel "
            "spreads connections over them.", ["worker"], registry=self.registry,
        )
        self._answered = self.worker_requests.labels(self.worker)
        self.latency = Histogram(
            "virtuoz_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        # Every gauge here is set from a reading (a scrape, a readiness check): under several workers
        # the series is the most recent reading of any live worker.
        self.queue_depth = Gauge(
            "virtuoz_queue_depth", "Messages waiting in each Dramatiq queue.", ["queue"], registry=self.registry,
            multiprocess_mode=LATEST,
        )
        self.dependency_up = Gauge(
            "virtuoz_dependency_up", "1 when the dependency answered the last readiness check.", ["dependency"],
            registry=self.registry, multiprocess_mode=LATEST,
        )

        # Deposits: what each chain's scanner last wrote into its cursor.
        self.scanner_height = Gauge("virtuoz_scanner_height", "The last block the chain's scanner processed.",
                                    ["chain"], registry=self.registry, multiprocess_mode=LATEST)
        self.scanner_lag = Gauge("virtuoz_scanner_lag_blocks", "Blocks between the node's head and the scanner, "
                                 "as the scanner last saw them.", ["chain"], registry=self.registry,
                                 multiprocess_mode=LATEST)
        self.scanner_idle = Gauge("virtuoz_scanner_last_check_age_seconds", "Seconds since the scanner last asked "
                                  "its node for the head (alert when it grows: the scanner is down).", ["chain"],
                                  registry=self.registry, multiprocess_mode=LATEST)

        # Treasury: each hot wallet against its levels, as the treasury worker's last check saw it.
        self.hot_balance = Gauge("virtuoz_treasury_hot_balance_minor", "The hot wallet's balance at the treasury's "
                                 "last check, minor units.", ["chain", "asset"], registry=self.registry,
                                 multiprocess_mode=LATEST)
        self.hot_below_floor = Gauge("virtuoz_treasury_hot_below_floor", "1 while the hot wallet is below its floor "
                                     "(a refill from the cold wallet is needed).", ["chain", "asset"],
                                     registry=self.registry, multiprocess_mode=LATEST)
        self.hot_above_ceiling = Gauge("virtuoz_treasury_hot_above_ceiling", "1 while the hot wallet is above its "
                                       "ceiling (its surplus is on its way to the cold wallet).", ["chain", "asset"],
                                       registry=self.registry, multiprocess_mode=LATEST)

        # Withdrawals approved and not yet mined: a count or an age that only grows is a stuck pipeline.
        self.withdrawals_in_flight = Gauge("virtuoz_withdrawals_in_flight", "Withdrawals approved and not yet "
                                           "mined, by state.", ["state"], registry=self.registry,
                                           multiprocess_mode=LATEST)
        self.withdrawals_oldest = Gauge("virtuoz_withdrawals_oldest_in_flight_seconds", "Age of the oldest "
                                        "withdrawal in each state, since its last stage began (approval, sign "
                                        "request, broadcast).", ["state"], registry=self.registry,
                                        multiprocess_mode=LATEST)
        self.withdrawals_waiting_on_fees = Gauge("virtuoz_withdrawals_waiting_on_fees", "Withdrawals in flight "
                                                 "held by the signer's fee caps or used-up fee bumps, by state.",
                                                 ["state"], registry=self.registry, multiprocess_mode=LATEST)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        self.latency.labels(request.method, route_template(request), str(status)).observe(seconds)
        self._answered.inc()

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

    def set_withdrawals_in_flight(self, rows: list[InFlight]) -> None:
        for row in rows:
            self.withdrawals_in_flight.labels(row.state).set(row.count)
            self.withdrawals_oldest.labels(row.state).set(row.oldest_seconds)
            self.withdrawals_waiting_on_fees.labels(row.state).set(row.waiting_on_fees)

    def set_queue_depths(self, depths: dict[str, int]) -> None:
        for queue, depth in depths.items():
            self.queue_depth.labels(queue).set(depth)

    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            # With the process's default registry: its CPU and memory, and the counters the domains
            # keep there (withdrawals requested and approved through this API, …).
            return generate_latest(Registries([self.registry, REGISTRY]))
        # A fresh registry per scrape: the collector reads the files as they are now.
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=str(self.multiprocess_dir))
        return generate_latest(every_worker)
