"""The audit hash chain: any edit, deletion or reordering names the event where it breaks."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.audit import (
    AuditRecord,
    ChainBreak,
    canonical_parts,
    content_of,
    occurred_at_text,
    verify_chain,
)
from tests.builders import audit_chain, rehash

CHAIN = "iris-7a"


def head_of(records: list[AuditRecord]) -> tuple[int, str]:
    return records[-1].seq, records[-1].hash


class TestVerifyChain:
    def test_intact_chain(self) -> None:
        records = audit_chain(5, CHAIN)

        assert verify_chain(CHAIN, records, head_of(records)) is None

    def test_edited_field(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        records[2] = replace(records[2], reason="nothing to see")

        assert verify_chain(CHAIN, records, head) == ChainBreak(
            CHAIN, 3, "content does not match its hash"
        )

    def test_edited_field_with_recomputed_hash_breaks_the_next_link(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        records[2] = rehash(replace(records[2], after={"active": False}))

        assert verify_chain(CHAIN, records, head) == ChainBreak(
            CHAIN, 4, "does not link to the previous event"
        )

    def test_deleted_middle_event(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        del records[2]

        assert verify_chain(CHAIN, records, head) == ChainBreak(
            CHAIN, 3, "missing or reordered (found 4)"
        )

    def test_two_events_swapped(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        records[1], records[2] = records[2], records[1]

        assert verify_chain(CHAIN, records, head) == ChainBreak(
            CHAIN, 2, "missing or reordered (found 3)"
        )

    def test_newest_event_removed(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)

        assert verify_chain(CHAIN, records[:-1], head) == ChainBreak(
            CHAIN, 5, "events 5 to 5 are missing"
        )

    def test_head_missing_while_events_exist(self) -> None:
        records = audit_chain(3, CHAIN)

        assert verify_chain(CHAIN, records, None) == ChainBreak(
            CHAIN, 3, "the chain has no recorded head"
        )

    def test_newest_event_rewritten_is_caught_by_the_head(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        records[-1] = rehash(replace(records[-1], reason="nothing to see"))

        assert verify_chain(CHAIN, records, head) is not None

    def test_newest_event_rewritten_names_that_event(self) -> None:
        records = audit_chain(5, CHAIN)
        head = head_of(records)
        records[-1] = rehash(replace(records[-1], reason="nothing to see"))

        found = verify_chain(CHAIN, records, head)

        assert found is not None
        assert found.seq == 5


# Any JSON a before/after may hold: the parts must join to the canonical JSON whatever it is.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_texts = st.text()
_maybe_texts = st.none() | st.text()


class TestCanonicalParts:
    """The database fills occurred_at, prev_hash and seq into the parts: joined, they must
    be exactly the canonical JSON the chain rule hashes (app.adapters.db.audit)."""

    @given(
        seq=st.integers(min_value=1, max_value=2**31 - 1),
        at=st.datetimes(timezones=st.just(UTC)),
        prev=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        strings=st.tuples(_texts, _texts, _texts, _texts, _texts, _texts),
        optional=st.tuples(_maybe_texts, _maybe_texts, _maybe_texts),
        before=st.none() | st.dictionaries(st.text(), _json_values, max_size=4),
        after=st.none() | st.dictionaries(st.text(), _json_values, max_size=4),
    )
    def test_joined_parts_are_the_canonical_json(
        self,
        seq: int,
        at: datetime,
        prev: str,
        strings: tuple[str, ...],
        optional: tuple[str | None, ...],
        before: dict[str, object] | None,
        after: dict[str, object] | None,
    ) -> None:
        chain, actor_id, role, action, entity_type, entity_id = strings
        subject_id, reason, request_id = optional
        record = AuditRecord(
            chain, seq, at, actor_id, role, action, entity_type, entity_id, subject_id,
            reason, before, after, request_id, prev,
        )  # fmt: skip
        canonical = json.dumps(
            record.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

        parts = canonical_parts(content_of(record))

        assert parts.join(occurred_at_text(at), prev, seq) == canonical

    def test_the_values_the_head_gives_are_refused_in_the_content(self) -> None:
        with pytest.raises(ValueError, match="the head gives"):
            canonical_parts({"action": "x", "seq": 3})

    def test_a_key_that_would_sort_between_the_heads_values_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no part can hold"):
            canonical_parts({"action": "x", "outcome": "y"})
