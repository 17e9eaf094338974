"""The double-entry ledger (DESIGN.md, "Money"): ``from custody import ledger``.

Tables in ``custody.ledger.models``; the logic in ``custody.ledger.service`` (re-exported here);
``verify_ledger`` recomputes every invariant of the postings; ``virtuoz ledger verify`` runs it
(``custody.books.cli``, which also proves the withdrawals and deposits against the books).
"""

from custody.ledger.service import (
    AVAILABLE,
    FEES,
    HELD,
    SANDBOX_FUNDING,
    AccountRef,
    ActivityItem,
    ActivityPage,
    Balance,
    CurrencyInfo,
    Hold,
    HoldAlreadyResolved,
    Leg,
    ReferenceConflict,
    Transfer,
    activity,
    balances,
    check_available,
    currencies,
    currency,
    get_hold,
    hold,
    move,
    post_hold,
    sandbox_credit,
    transfer,
    void_hold,
)
from custody.ledger.verify import verify_ledger

__all__ = [
    "AVAILABLE", "FEES", "HELD", "SANDBOX_FUNDING", "AccountRef", "ActivityItem", "ActivityPage", "Balance",
    "CurrencyInfo", "Hold", "HoldAlreadyResolved", "Leg", "ReferenceConflict", "Transfer", "activity", "balances",
    "check_available", "currencies", "currency", "get_hold", "hold", "move", "post_hold", "sandbox_credit",
    "transfer", "verify_ledger", "void_hold",
]
