"""What a worker process exports about its Dramatiq messages and queues (``core.metrics`` serves it).

Counted as messages run, in the process's default registry: how long a message waited before a
worker took it (from its enqueue, or from its due time for a delayed retry), how long it ran, how
it ended, how many runs were retries, how many went to the dead-letter queue. Read from Redis at
each scrape, for the queues this worker consumes: the messages waiting, the delayed ones (retries
in backoff) and the dead letters Dramatiq keeps for a week.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

MESSAGES = Counter("virtuoz_job_messages_total", "Messages a worker finished, by queue, actor and outcome "
                   "(done, failed: raised, retried or dead-lettered after; skipped: expired or cut by AgeLimit).",
                   ["queue", "actor", "outcome"])
RETRIES = Counter("virtuoz_job_retries_total", "Runs that were retries of a failed message, by queue and actor.",
                  ["queue", "actor"])
DEAD_LETTERS = Counter("virtuoz_job_dead_letters_total", "Messages this worker moved to the dead-letter queue "
                       "(retries exhausted), by queue and actor.", ["queue", "actor"])
LATENCY = Histogram("virtuoz_job_latency_seconds", "From a message's enqueue (or due time, when delayed) to a "
                    "worker starting it, by queue.", ["queue"], buckets=LATENCY_BUCKETS)
DURATION = Histogram("virtuoz_job_duration_seconds", "Time a message ran, by queue and actor.", ["queue", "actor"],
                     buckets=LATENCY_BUCKETS)


def _queue(message: dramatiq.Message[Any]) -> str:
    return q_name(message.queue_name)  # a retry is consumed from its queue, not from ``<queue>.DQ``


class JobMetrics(Middleware):
    """Per-message counters; one per broker of a worker process (messages run in worker threads)."""

    def __init__(self) -> None:
        self._started = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        now_ms = time.time() * 1000
        due_ms = message.options.get("eta", message.message_timestamp)
        LATENCY.labels(_queue(message)).observe(max(0.0, (now_ms - due_ms) / 1000))
        if message.options.get("retries", 0):
            RETRIES.labels(_queue(message), message.actor_name).inc()
        self._started.at = time.perf_counter()

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        started = getattr(self._started, "at", None)
        if started is not None:
            DURATION.labels(_queue(message), message.actor_name).observe(time.perf_counter() - started)
            self._started.at = None
        outcome = "done" if exception is None else "failed"
        MESSAGES.labels(_queue(message), message.actor_name, outcome).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        MESSAGES.labels(_queue(message), message.actor_name, "skipped").inc()

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        DEAD_LETTERS.labels(_queue(message), message.actor_name).inc()


class QueueCollector(Collector):
    """Queue lengths read from the broker at scrape time, by ``read``: queue → (waiting, delayed, dead)."""

    def __init__(self, read: Callable[[], Mapping[str, tuple[int, int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("virtuoz_queue_depth", "Messages waiting in each Dramatiq queue.",
                                    labels=["queue"])
        delayed = GaugeMetricFamily("virtuoz_queue_delayed", "Delayed messages of each queue (retries in "
                                    "backoff, sends with a delay) no worker has taken yet: a running worker "
                                    "holds those it prefetched until they are due.", labels=["queue"])
        dead = GaugeMetricFamily("virtuoz_queue_dead_letters", "Messages in each queue's dead-letter set "
                                 "(retries exhausted; kept 7 days).", labels=["queue"])
        try:
            lengths = self.read()
        except Exception as error:
            # The broker down: no queue series this scrape (absent, not a made-up zero); the worker's
            # own errors say why.
            log.warning("queue lengths unavailable: %s", error)
            return
        for queue, (waiting_count, delayed_count, dead_count) in sorted(lengths.items()):
            waiting.add_metric([queue], waiting_count)
            delayed.add_metric([queue], delayed_count)
            dead.add_metric([queue], dead_count)
        yield from (waiting, delayed, dead)


def watch_queues(read: Callable[[], Mapping[str, tuple[int, int, int]]],
                 registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    collector = QueueCollector(read)
    registry.register(collector)
    return collector
