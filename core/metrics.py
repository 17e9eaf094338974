"""``/metrics`` of the processes other than the API: workers, scheduler, scanner, signer, ``trp serve``.

Each serves prometheus-client's exposition on ``VIRTUOZ_METRICS_HOST:VIRTUOZ_METRICS_PORT`` (unset:
none), from a thread of its own, so a process whose loop is stuck still answers with its last
values and its ``up`` stays 1 — the heartbeats and ages in the values are what show it is stuck.

What is exported is the process's default registry (its counters, and the CPU, memory and file
descriptors of the process), plus whatever registries of its own the process adds (the scanner's
per-chain counters). Every series carries no process label: Prometheus's ``job`` and ``instance``
say which process answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from core.settings import Settings

log = logging.getLogger(__name__)


class Registries(Collector):
    """Several registries scraped as one, in order."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        self.registries = list(registries)

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def serve_metrics(settings: Settings, process: str, *extra: CollectorRegistry, port: int | None = None) -> Any:
    """Serve this process's metrics when a port is set (``port`` overrides the setting); returns the
    server (None when there is no port). The server's thread is a daemon: it ends with the process."""
    port = settings.metrics_port if port is None else port
    if not port:
        return None
    combined = CollectorRegistry(auto_describe=False)
    combined.register(Registries([REGISTRY, *extra]))
    server, _ = start_http_server(port, addr=settings.metrics_host, registry=combined)
    log.info("%s metrics on http://%s:%s/metrics", process, settings.metrics_host, server.server_port)
    return server
