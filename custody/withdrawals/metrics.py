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
UNVERIFIED_REPLIES = Counter(
    "virtuoz_withdrawal_unverified_replies_total",
    "Replies on the custody queue not signed by the signer key (forged or garbled), ignored; by kind.", ["kind"])

FEE_ALERTS = Counter(
    "virtuoz_withdrawal_fee_alerts_total",
    "Withdrawals (and nonce fillers) that started waiting on fees: a quote or bump above the signer's caps, or "
    "fee bumps used up; by reason and chain.", ["reason", "chain"])
NONCE_FILLERS = Counter(
    "virtuoz_nonce_fillers_total", "Nonce fillers, by event (created, broadcast, mined, refused) and chain.",
    ["event", "chain"])
TRACKING_FAILURES = Counter(
    "virtuoz_withdrawal_tracking_failures_total",
    "Tracking runs that could not reach a chain node (the next tick tries again), by chain.", ["chain"])


def count(event: str, chain: str, asset: str) -> None:
    WITHDRAWAL_EVENTS.labels(event, chain, asset).inc()
