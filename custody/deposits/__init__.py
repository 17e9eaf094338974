"""Deposits: money users send to their deposit addresses, from the chain to the ledger.

``models`` (deposits, scanner cursors, recent blocks), ``states`` (the state machine),
``tracking`` (what the scanner and the ingest route record), ``crediting`` and ``actors`` (the
deposits worker credits confirmed deposits and reverses reorged credits), ``ingest`` (events
from external watchers, verified against the chain), ``queries`` (lists and scanner positions).
"""
