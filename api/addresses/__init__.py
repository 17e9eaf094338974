"""Deposit addresses (`/platform/crypto/address/...`): one per user and chain, from the HD pool."""
