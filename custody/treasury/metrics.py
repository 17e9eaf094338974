"""Treasury metrics, in the process's default Prometheus registry (the treasury worker's)."""

from __future__ import annotations

from prometheus_client import Counter

SWEEP_EVENTS = Counter(
    "virtuoz_sweep_events_total",
    "Sweep state changes (created, topup_sent, topup_confirmed, sent, confirmed, failed), by event, chain and asset.",
    ["event", "chain", "asset"])
SWEEP_SIGNER_REFUSALS = Counter(
    "virtuoz_sweep_signer_refusals_total", "Sweep and top-up requests the signer refused, by kind and reason.",
    ["kind", "reason"])
SWEEP_UNVERIFIED_REPLIES = Counter(
    "virtuoz_sweep_unverified_replies_total",
    "Replies on the treasury queue not signed by the signer key (forged or garbled), ignored; by kind.", ["kind"])
SWEEP_FEE_ALERTS = Counter(
    "virtuoz_sweep_fee_alerts_total", "Sweeps that started waiting on fees above the signer's caps, by chain.",
    ["chain"])


def count(event: str, chain: str, asset: str) -> None:
    SWEEP_EVENTS.labels(event, chain, asset).inc()
