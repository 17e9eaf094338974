"""The caller's withdrawal address book (`/wallet/address-book`): entries and the allowlist setting."""
