"""The scanner process's own counters, served with the process's (``core.metrics``) on
``VIRTUOZ_METRICS_PORT`` or ``--metrics-port``.

Height and lag need no port: the scanner writes them into ``scanner_cursors`` and the API's
``/metrics`` exposes them for every chain (``virtuoz_scanner_height``, ``virtuoz_scanner_lag_blocks``).
These counters are what only the process knows: blocks read, deposits found, reorgs, failures,
and the alerts of a node that cannot be trusted (a reorg deeper than the window, empty log answers
that contradict the blocks' blooms).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ScannerMetrics:
    def __init__(self, chain: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"chain": chain}
        self.blocks = Counter("virtuoz_scanner_blocks", "Blocks processed.", ["chain"],
                              registry=self.registry).labels(**labels)
        self.deposits = Counter("virtuoz_scanner_deposits", "Transfers to deposit addresses found.", ["chain"],
                                registry=self.registry).labels(**labels)
        self.reorgs = Counter("virtuoz_scanner_reorgs", "Reorgs detected.", ["chain"],
                              registry=self.registry).labels(**labels)
        self.reorg_depth = Histogram("virtuoz_scanner_reorg_depth_blocks", "Blocks replaced per reorg.", ["chain"],
                                     buckets=(1, 2, 3, 5, 10, 20, 50, 100, 250), registry=self.registry).labels(**labels)
        self.failures = Counter("virtuoz_scanner_failures", "Steps that failed and were retried, by cause.",
                                ["chain", "cause"], registry=self.registry)
        self.height = Gauge("virtuoz_scanner_process_height", "The last block processed.", ["chain"],
                            registry=self.registry).labels(**labels)
        self.head = Gauge("virtuoz_scanner_process_head", "The node's head when last asked.", ["chain"],
                          registry=self.registry).labels(**labels)
        # Alerts: each is 1 while a human must look, 0 otherwise.
        self.halted = Gauge("virtuoz_scanner_halted", "1 while a reorg deeper than the window stops the scanner.",
                            ["chain"], registry=self.registry).labels(**labels)
        self.log_refetches = Counter(
            "virtuoz_scanner_log_refetches",
            "Blocks whose logsBloom contradicted an empty eth_getLogs answer, asked again by hash, by outcome "
            "(found: the node had lagged; empty: a bloom false positive, or a node that keeps lying).",
            ["chain", "outcome"], registry=self.registry)
        self.empty_logs_streak = Gauge(
            "virtuoz_scanner_empty_logs_streak",
            "Consecutive blocks whose logsBloom contradicted an empty eth_getLogs answer.", ["chain"],
            registry=self.registry).labels(**labels)
        self.empty_logs_alert = Gauge(
            "virtuoz_scanner_empty_logs_alert",
            "1 while the streak of blocks contradicting their blooms is at or above scanner_empty_logs_alert_blocks.",
            ["chain"], registry=self.registry).labels(**labels)
        self.chain = chain

    def failed(self, cause: str) -> None:
        self.failures.labels(self.chain, cause).inc()

    def refetched(self, outcome: str, blocks: int = 1) -> None:
        self.log_refetches.labels(self.chain, outcome).inc(blocks)
