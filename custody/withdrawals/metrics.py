"""Withdrawal metrics, in the process's default Prometheus registry (API and custody worker alike)."""

from __future__ import annotations

from prometheus_client import Counter

WITHDRAWAL_EVENTS = Counter(
    "virtuoz_withdrawal_events_total", "Withdrawal state changes, by event, chain and asset.",
    ["event", "chain", "asset"])
SIGNER_REFUSALS = Counter(
    "virtuoz_withdrawal_signer_refusals_total", "Sign requests the signer refused, by reason.", ["reason"])
SIGNED_REPLIES_REJECTED = Counter(
    "virtuoz_withdrawal_signed_replies_rejected_total",
    "Signed transactions from the custody queue that were not the transaction asked for.")


def count(event: str, chain: str, asset: str) -> None:
    WITHDRAWAL_EVENTS.labels(event, chain, asset).inc()
