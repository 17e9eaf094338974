"""Deposit addresses: a per-chain pool derived from account xpubs, assigned one per (user, chain)."""
