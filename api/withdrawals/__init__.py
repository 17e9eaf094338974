"""Withdrawals (`/platform/crypto/withdrawals/...`): request, list, read, approve and roll back."""
