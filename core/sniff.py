"""What an uploaded file really is, from its bytes (puremagic), never from what the client says.

Accepted: PDF, PNG, JPEG, WebP and plain UTF-8 text. A declared content type or a filename
extension that disagrees with the bytes is refused: an EXE renamed ``.pdf`` and a PNG declared as
PDF both fail.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import unquote

import puremagic

from core.errors import UnsupportedMediaType

SNIFF_BYTES = 4096
ACCEPTED: dict[str, frozenset[str]] = {
    "application/pdf": frozenset({".pdf"}),
    "image/png": frozenset({".png"}),
    "image/jpeg": frozenset({".jpg", ".jpeg"}),
    "image/webp": frozenset({".webp"}),
    "text/plain": frozenset({".txt", ".text", ".log", ".md", ".csv"}),
}
# Declared types that say nothing: the bytes decide.
UNINFORMATIVE = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RefusedFileType(UnsupportedMediaType):
    message = "The file's content is not an accepted type, or does not match its declared type or name."


def _looks_like_text(head: bytes) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(head, final=False)  # a multibyte character may be cut at the end
    except UnicodeDecodeError:
        return False
    return not _CONTROL.search(text)


def sniff(head: bytes) -> str | None:
    """The accepted media type these leading bytes belong to, or None."""
    try:
        for match in puremagic.magic_string(head):
            if match.mime_type in ACCEPTED:
                return match.mime_type
    except puremagic.PureError:
        pass
    if head and _looks_like_text(head):
        return "text/plain"
    return None


def extension(filename: str | None) -> str | None:
    if not filename or "." not in filename:
        return None
    return "." + filename.rsplit(".", 1)[1].lower()


def check_upload(head: bytes, declared_type: str | None, filename: str | None) -> str:
    """The media type to store, after checking the bytes against what the client declared."""
    detected = sniff(head)
    declared = (declared_type or "").split(";", 1)[0].strip().lower()
    details = {"detected": detected, "declared": declared or None, "extension": extension(filename)}
    if detected is None:
        raise RefusedFileType(details=details)
    if declared not in UNINFORMATIVE and declared != detected:
        raise RefusedFileType(details=details)
    suffix = extension(filename)
    if suffix is not None and suffix not in ACCEPTED[detected]:
        raise RefusedFileType(details=details)
    return detected


async def utf8_guard(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass chunks through, refusing the upload if any part of a text file is not clean UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    async for chunk in chunks:
        try:
            if _CONTROL.search(decoder.decode(chunk)):
                raise RefusedFileType(details={"detected": "binary data in a text file"})
        except UnicodeDecodeError:
            raise RefusedFileType(details={"detected": "invalid UTF-8 in a text file"}) from None
        yield chunk
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise RefusedFileType(details={"detected": "truncated UTF-8 in a text file"}) from None


def safe_filename(name: str | None, fallback: str = "file") -> str:
    """The client's filename as display metadata only: no path, no control characters, bounded."""
    # Clients may percent-encode the name (RFC 5987): decode first, so "%2F" cannot hide a path.
    base = unquote(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|:*?').strip(" .")
    return base[:120] or fallback


async def split_head(chunks: AsyncIterator[bytes]) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``SNIFF_BYTES`` (or fewer) for ``check_upload``, and an iterator that yields them
    again followed by the rest: the upload is still streamed, never read whole into memory."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break

    async def replay() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in chunks:
            yield chunk

    return head, replay()
