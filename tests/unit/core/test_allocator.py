"""Password hashes on every thread of an executor leave a process's memory where it was: each
`virtuoz` process tells glibc to unmap large freed blocks (core.allocator), from its first step."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter: the allocator's thresholds are per process and move for good.
HASH_ON_EVERY_THREAD = """
import concurrent.futures, contextlib, psutil, sys
from cli.main import main
with contextlib.suppress(SystemExit):
    main(["--help"])  # the console script's start, as every process has it
from identity.passwords import _hasher
process = psutil.Process()
before = process.memory_info().rss
with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
    for _ in range(3):
        list(pool.map(lambda _: _hasher.hash("correct horse battery staple"), range(THREADS)))
print(process.memory_info().rss - before)
"""
THREADS = 4
HASH_MEMORY = 19 * 1024 * 1024  # identity.passwords: argon2id's m


def test_hashing_on_every_thread_gives_its_memory_back():
    script = HASH_ON_EVERY_THREAD.replace("THREADS", str(THREADS))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    grown = int(run.stdout.strip().splitlines()[-1])
    # Without the fixed threshold: one hash buffer kept per thread (THREADS x 19 MiB).
    assert grown < HASH_MEMORY, f"{grown / 2**20:.1f} MiB kept after hashing on {THREADS} threads"
