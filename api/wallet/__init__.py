"""The caller's wallet: balances and activity, read from the ledger."""
