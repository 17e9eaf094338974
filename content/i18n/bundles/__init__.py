"""The packaged locale bundles (``<locale>.json``), read with importlib.resources."""
