"""glibc's allocator, told to give large blocks back to the system when they are freed.

By default glibc serves a block past 128 KiB with its own mapping, unmapped when freed, but then
raises that threshold to the size of the freed block (up to 32 MiB): the next block of that size
comes from the thread's heap and stays there once freed. A password hash (argon2id, 19 MiB) on
each thread of an executor so ratchets a process's memory by 19 MiB per thread, for good (114 MiB
for the default executor of a 2-core machine, measured). A fixed threshold turns the raising off.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # malloc.h
# Above what a request, a page of rows or a JSON body usually takes, below a password hash's buffer.
MMAP_THRESHOLD = 1024 * 1024


def return_large_blocks() -> None:
    """Serve every block of ``MMAP_THRESHOLD`` or more with its own mapping, given back when freed."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc (musl has no mallopt): nothing to tune
        return
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        log.warning("mallopt(M_MMAP_THRESHOLD) refused: large freed blocks may stay in the heap")
