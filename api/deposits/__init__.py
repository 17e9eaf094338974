"""Deposits: a watcher's event ingested once the chain confirms it, and the caller's deposits."""
