"""Which file store the settings ask for: a local directory, or S3 (``VIRTUOZ_FILE_STORE=s3://…``).

Its own module, above both stores, so that neither store imports the other.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from core.storage import Area, FileStore, LocalFileStore


def local_root(settings: Settings, area: Area) -> Path:
    if area == "reports":
        return settings.compliance_reports_dir or settings.data_dir / "reports"
    return settings.data_dir / "evidence"


def file_store(settings: Settings, area: Area = "evidence") -> FileStore:
    """The store of ``area`` the settings ask for. Nothing is opened yet: an S3 store connects on
    first use, in the event loop that uses it; ``close`` it in that loop when done."""
    if settings.file_store is None:
        return LocalFileStore(local_root(settings, area))
    # Imported here: botocore takes a while to import, and a local store never needs it.
    from core.storage_s3 import S3FileStore  # noqa: PLC0415

    return S3FileStore.from_settings(settings, area)
