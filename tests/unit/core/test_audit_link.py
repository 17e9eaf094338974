"""The audit chain link computed by audit_append() in SQL is the one an offline verifier recomputes."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from core.audit import GENESIS, event_hash, hashed_around_seq

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(data=st.dictionaries(st.text(max_size=8), json_values, max_size=4), type=st.text(max_size=20),
       actor=st.none() | st.text(max_size=20), seq=st.integers(min_value=1, max_value=2**31 - 1),
       prev_hash=st.sampled_from([GENESIS, "ab" * 32]))
def test_the_text_hashed_around_seq_is_the_events_canonical_text(data, type, actor, seq, prev_hash):
    event = {"aggregate_type": "escrow", "aggregate_id": "3f2a", "type": type, "data": data, "actor": actor,
             "occurred_at": "2026-12-16T10:00:00.123456Z"}
    head, tail = hashed_around_seq(event)
    # What audit_append() hashes: head, seq as text, tail, prev_hash.
    in_sql = hashlib.sha256(head + str(seq).encode() + tail + prev_hash.encode()).hexdigest()
    assert in_sql == event_hash({**event, "seq": seq}, prev_hash)
