"""The journal's group commit: requests in flight share fsyncs, and the rules stay exact under concurrency."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.settings import WithdrawalLimit
from signer.journal import JournalUnavailable
from signer.service import Refused, Signed, Signer
from tests.unit.signer.test_service import ask, make_signer, native

THREADS = 8
WAIT = 30  # seconds: only so that a broken test fails instead of hanging


def ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=index + 1, version=4)) for index in range(count)]


def at_once(count: int, request) -> list[Signed | Refused]:
    """``request(index)`` from ``count`` threads released together."""
    start = threading.Barrier(count)

    def run(index: int) -> Signed | Refused:
        start.wait(WAIT)
        return request(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def signer(tmp_path, keys) -> Signer:
    return make_signer(tmp_path, keys[1])


@pytest.fixture
def keys():
    from core.signing import generate_keypair

    return generate_keypair()


def test_one_nonce_is_signed_for_one_of_many_withdrawals_asking_at_once(signer, keys) -> None:
    withdrawals = ids(THREADS)
    outcomes = at_once(THREADS, lambda index: ask(signer, keys[0], withdrawals[index],
                                                  native(signer, nonce=5, value=10**15 * (index + 1))))
    assert sum(isinstance(outcome, Signed) for outcome in outcomes) == 1
    assert {outcome.reason for outcome in outcomes if isinstance(outcome, Refused)} == {"nonce_taken"}
    assert len(signer.journal.at_nonce(31337, signer.hot_wallet(31337), 5)) == 1


def test_copies_of_one_request_at_once_get_one_signature(signer, keys) -> None:
    (withdrawal,) = ids(1)
    unsigned = native(signer, nonce=3)
    outcomes = at_once(THREADS, lambda index: ask(signer, keys[0], withdrawal, unsigned))
    assert all(isinstance(outcome, Signed) for outcome in outcomes)
    assert len({outcome.raw_tx for outcome in outcomes}) == 1  # type: ignore[union-attr]
    assert sum(not outcome.repeated for outcome in outcomes) == 1  # type: ignore[union-attr]
    assert len(signer.journal.for_withdrawal(withdrawal)) == 1


def test_the_daily_limit_counts_the_signatures_not_yet_committed(tmp_path, keys) -> None:
    signer = make_signer(tmp_path, keys[1], limits={"ETH": WithdrawalLimit(decimals=18, single="1", daily="3")})
    withdrawals = ids(THREADS)
    outcomes = at_once(THREADS, lambda index: ask(signer, keys[0], withdrawals[index],
                                                  native(signer, nonce=index, value=10**18)))
    assert sum(isinstance(outcome, Signed) for outcome in outcomes) == 3
    assert {outcome.reason for outcome in outcomes if isinstance(outcome, Refused)} == {"daily_limit_exceeded"}


def test_no_answer_leaves_before_the_fsync_that_covers_it(signer, keys) -> None:
    journal = signer.journal
    reader = sqlite3.connect(journal.path, check_same_thread=False)
    fsynced: set[str] = set()  # withdrawals whose signature or refusal an fsync has covered
    guard = threading.Lock()
    flush = journal._flush

    def watched_flush() -> None:
        with guard:
            committed = {row[0] for row in reader.execute(
                "SELECT withdrawal_id FROM signatures UNION SELECT withdrawal_id FROM refusals")}
        flush()
        with guard:
            fsynced.update(committed)

    journal._flush = watched_flush  # type: ignore[method-assign]
    withdrawals = ids(4 * THREADS)

    def request(index: int) -> Signed | Refused:
        # Every other one takes a nonce already asked for: refusals are answered after their fsync too.
        outcome = ask(signer, keys[0], withdrawals[index], native(signer, nonce=index // 2, value=10**15 + index))
        with guard:
            assert outcome.withdrawal_id in fsynced, f"{outcome} answered before its fsync"
        return outcome

    outcomes = at_once(len(withdrawals), request)
    assert sum(isinstance(outcome, Signed) for outcome in outcomes) == 2 * THREADS
    reader.close()


def test_requests_deciding_during_an_fsync_share_the_next(signer, keys) -> None:
    journal = signer.journal
    flush, release = journal._flush, threading.Event()
    flushing = threading.Event()
    writes = threading.Semaphore(0)
    write = journal.write

    def slow_first_flush() -> None:
        if not flushing.is_set():
            flushing.set()
            assert release.wait(WAIT)
        flush()

    def counted_write(*args, **kwargs) -> None:
        write(*args, **kwargs)
        writes.release()

    journal._flush = slow_first_flush  # type: ignore[method-assign]
    journal.write = counted_write  # type: ignore[method-assign]
    commits = journal.commits
    withdrawals = ids(4)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(ask, signer, keys[0], withdrawals[0], native(signer, nonce=0, value=10**15))
        assert flushing.wait(WAIT) and writes.acquire(timeout=WAIT)
        others = [pool.submit(ask, signer, keys[0], withdrawals[index], native(signer, nonce=index, value=10**15))
                  for index in (1, 2, 3)]
        for _ in others:
            assert writes.acquire(timeout=WAIT)  # decided and written while the first fsync runs
        assert not first.done() and not any(other.done() for other in others)  # nobody answered yet
        release.set()
        outcomes = [first.result(WAIT), *(other.result(WAIT) for other in others)]
    assert all(isinstance(outcome, Signed) for outcome in outcomes)
    assert journal.commits - commits == 2  # the first request's, then the three written meanwhile together


def test_a_failed_fsync_stops_the_journal(signer, keys) -> None:
    def failing() -> None:
        raise OSError(5, "Input/output error")

    signer.journal._flush = failing  # type: ignore[method-assign]
    (withdrawal, other) = ids(2)
    with pytest.raises(JournalUnavailable):
        ask(signer, keys[0], withdrawal, native(signer, nonce=0))
    with pytest.raises(JournalUnavailable):  # no more signing from memory alone, nor answering from it
        ask(signer, keys[0], withdrawal, native(signer, nonce=0))
    with pytest.raises(JournalUnavailable):
        ask(signer, keys[0], other, native(signer, nonce=1))
