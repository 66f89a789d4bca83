"""The audit trail's events and its hash chain.

Every state change produces an `AuditEvent` (what, on which entity, before and after in
blinded form, why). The unit of work appends it, in the same transaction as the change, to
the chain of its study (or the `_system` chain for actions outside any study).

Chain rule: event n of a chain stores `prev_hash` = hash of event n-1 (64 zeros for the
first) and `hash` = SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of
{chain, seq, occurred_at (ISO 8601 UTC, microseconds), actor_id, actor_role, action,
entity_type, entity_id, subject_id, reason, before, after, request_id, prev_hash}. Editing,
deleting or reordering any event breaks the recomputation at that event or the next one, and
the chain head (last seq and hash) catches the removal of the newest events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
SYSTEM_CHAIN = "_system"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API client, a web user or an operator at the command line."""

    actor_id: str
    role: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A change about to be recorded. It must hold no arm and no kit type."""

    action: str
    entity_type: str
    entity_id: str
    study: str | None = None
    subject_id: str | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    reason: str | None = None

    @property
    def chain(self) -> str:
        return self.study or SYSTEM_CHAIN


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An event as stored: placed in its chain, timed and hashed."""

    chain: str
    seq: int
    occurred_at: datetime
    actor_id: str
    actor_role: str
    action: str
    entity_type: str
    entity_id: str
    subject_id: str | None
    reason: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    request_id: str | None
    prev_hash: str
    hash: str = field(default="")

    def payload(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "seq": self.seq,
            "occurred_at": self.occurred_at.isoformat(timespec="microseconds"),
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "subject_id": self.subject_id,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
        }

    def computed_hash(self) -> str:
        canonical = json.dumps(
            self.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CanonicalParts:
    """An event's canonical JSON (the chain rule's), cut around the three values only the
    chain's head gives: occurred_at, prev_hash and seq. The canonical JSON is
    `before_time + occurred_at + '","prev_hash":"' + prev_hash + before_seq + seq + rest`
    (see `join`), so the database can hash the event while it holds the head, with the
    same rule `AuditRecord.computed_hash` checks."""

    before_time: str
    before_seq: str
    rest: str

    def join(self, occurred_at: str, prev_hash: str, seq: int) -> str:
        return (
            f'{self.before_time}{occurred_at}","prev_hash":"{prev_hash}'
            f"{self.before_seq}{seq}{self.rest}"
        )


_HEAD_GIVEN = ("occurred_at", "prev_hash", "seq")


def canonical_parts(content: Mapping[str, Any]) -> CanonicalParts:
    """The parts of the canonical JSON of `content` (an event's payload without the three
    values the head gives) around them. Sorted keys put occurred_at and prev_hash side by
    side, between entity_type and reason, and seq between request_id and subject_id."""
    if set(content) & set(_HEAD_GIVEN):
        raise ValueError("the head gives occurred_at, prev_hash and seq")
    between = sorted(k for k in content if "occurred_at" < k < "prev_hash")
    if between:
        # It would sort between occurred_at and prev_hash, which the head gives side by side.
        raise ValueError(f"no part can hold {between}")

    def entries(keys: Iterable[str]) -> list[str]:
        return [
            json.dumps({k: content[k]}, separators=(",", ":"), ensure_ascii=False, sort_keys=True)[
                1:-1
            ]
            for k in keys
        ]

    keys = sorted(content)
    first = entries(k for k in keys if k < "occurred_at")
    middle = entries(k for k in keys if "prev_hash" < k < "seq")
    last = entries(k for k in keys if k > "seq")
    return CanonicalParts(
        before_time="{" + "".join(e + "," for e in first) + '"occurred_at":"',
        before_seq='",' + "".join(e + "," for e in middle) + '"seq":',
        rest="".join("," + e for e in last) + "}",
    )


def content_of(record: AuditRecord) -> dict[str, Any]:
    """The record's payload without the three values its chain's head gives."""
    return {k: v for k, v in record.payload().items() if k not in _HEAD_GIVEN}


def occurred_at_text(at: datetime) -> str:
    """An instant as the chain rule writes it: ISO 8601 in UTC, to the microsecond."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class ChainBreak:
    chain: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"chain {self.chain!r}, event {self.seq}: {self.reason}"


def verify_chain(
    chain: str, records: Iterable[AuditRecord], head: tuple[int, str] | None
) -> ChainBreak | None:
    """The first break in one chain's records (given in seq order), or None when intact."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    for record in records:
        if record.seq != expected_seq:
            return ChainBreak(chain, expected_seq, f"missing or reordered (found {record.seq})")
        if record.prev_hash != prev_hash:
            return ChainBreak(chain, record.seq, "does not link to the previous event")
        if record.computed_hash() != record.hash:
            return ChainBreak(chain, record.seq, "content does not match its hash")
        prev_hash = record.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    if head is None:
        if last_seq:
            return ChainBreak(chain, last_seq, "the chain has no recorded head")
        return None
    head_seq, head_hash = head
    if head_seq > last_seq:
        return ChainBreak(chain, last_seq + 1, f"events {last_seq + 1} to {head_seq} are missing")
    if head_seq < last_seq:
        return ChainBreak(chain, head_seq + 1, "events past the recorded head")
    if head_hash != prev_hash:
        return ChainBreak(chain, last_seq, "does not match the recorded chain head")
    return None
