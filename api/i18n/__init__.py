"""Locale bundles, message resolution and the locale fallback chain."""
