"""The audit hash chain: any edit, deletion or reordering names the event where it breaks."""

from __future__ import annotations

from dataclasses import replace

from app.domain.audit import AuditRecord, ChainBreak, verify_chain
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
