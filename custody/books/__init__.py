"""The books against the tables they settle (withdrawals and their holds, deposits and their
credits, the system accounts on the other side), and `virtuoz ledger verify`, which proves both
the ledger's own invariants and these (``cli.py``).

A custody-level package, not part of ``custody.ledger``: it reads withdrawals and deposits, and
the ledger never imports the domains that post to it.
"""

from custody.books.invariants import Finding, books_counts, verify_books

__all__ = ["Finding", "books_counts", "verify_books"]
