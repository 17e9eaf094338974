from __future__ import annotations

import asyncio

import pytest

from core.sniff import RefusedFileType, check_upload, safe_filename, sniff, utf8_guard
from core.storage import InvalidStorageKey, shard_path

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48


@pytest.mark.parametrize(("head", "expected"), [
    (PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"),
    ("Reçu de paiement\nligne 2\n".encode(), "text/plain"), (EXE, None), (b"\x00\x01\x02binary", None),
])
def test_sniff_reads_the_bytes(head, expected):
    assert sniff(head) == expected


def test_an_exe_renamed_pdf_is_refused():
    with pytest.raises(RefusedFileType):
        check_upload(EXE, "application/pdf", "invoice.pdf")


def test_a_png_declared_as_pdf_is_refused():
    with pytest.raises(RefusedFileType) as refused:
        check_upload(PNG, "application/pdf", "scan.png")
    assert refused.value.status == 415 and refused.value.details["detected"] == "image/png"


def test_an_extension_that_disagrees_is_refused():
    with pytest.raises(RefusedFileType):
        check_upload(PNG, "image/png", "scan.pdf")


def test_matching_or_uninformative_declarations_pass():
    assert check_upload(PDF, "application/pdf", "a.PDF") == "application/pdf"
    assert check_upload(JPEG, "application/octet-stream", "photo.jpeg") == "image/jpeg"
    assert check_upload(b"hello", None, None) == "text/plain"


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\évidence.pdf", "évidence.pdf"), ("a\x00b<c>.pdf", "abc.pdf"),
    ("", "file"), ("...", "file"),
])
def test_safe_filename_keeps_only_a_display_name(name, expected):
    assert safe_filename(name) == expected


# The stores themselves, local and S3 against one set of tests: tests/integration/core/test_file_stores.py.
@pytest.mark.parametrize("key", ["../x", "a/b", "/abs", "x\x00y", "", "..", "a\\b"])
def test_shard_path_refuses_traversal(key):
    with pytest.raises(InvalidStorageKey):
        shard_path(key)


def test_shard_path_is_stable_and_two_levels_deep():
    path = shard_path("3f1c2d7e-evidence")
    assert path == shard_path("3f1c2d7e-evidence")
    first, second, key = path.split("/")
    assert len(first) == len(second) == 2 and key == "3f1c2d7e-evidence"


async def chunks(*parts: bytes):
    for part in parts:
        yield part


def test_utf8_guard_refuses_binary_hidden_after_the_head():
    async def drain():
        return [chunk async for chunk in utf8_guard(chunks(b"plain text\n", b"\x00\x01"))]

    with pytest.raises(RefusedFileType):
        asyncio.run(drain())
