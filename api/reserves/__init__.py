"""Proof of reserves: the latest published roots (public) and the caller's own proof."""
