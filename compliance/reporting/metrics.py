"""The outcome of the last reconciliation report built, per asset, in the compliance worker's registry
(served by ``core.metrics``). Reports are built in order by the schedule; one asked again by hand for
an old period shows that period until the next, which ``as_of`` tells apart. With several compliance
workers, take the series with the highest ``as_of``.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Gauge

DIFFERENCE = Gauge("virtuoz_reconciliation_difference_minor", "On chain minus owed to customers at the last "
                   "reconciliation, minor units, by asset (negative: a shortfall).", ["currency"])
SHORTFALL = Gauge("virtuoz_reconciliation_shortfall", "1 when the last reconciliation found less on chain than "
                  "owed to customers, by asset.", ["currency"])
AS_OF = Gauge("virtuoz_reconciliation_as_of_timestamp_seconds", "The moment the last reconciliation compared "
              "(its period's end, Unix time), by asset.", ["currency"])


def record(currency: str, difference: int, as_of: datetime) -> None:
    AS_OF.labels(currency).set(as_of.timestamp())
    DIFFERENCE.labels(currency).set(difference)
    SHORTFALL.labels(currency).set(1 if difference < 0 else 0)
