"""Typed builders for test data: study documents and studies, audit chains.

`study_document()` is the IRIS-7A example file as a plain dict; tests bend it with
`set_path`/`del_path` and turn it into a `Study` with `make_study`, which skips the
`study_problems` check on purpose so that contradicting definitions can be built.
"""

from __future__ import annotations

import copy
import functools
import re
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.adapters.studyfiles.codec import parse_document, to_domain
from app.domain.audit import GENESIS_HASH, AuditRecord
from app.domain.study import Study

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
_PART = re.compile(r"^(?P<key>[^\[\]]+)(?P<indexes>(?:\[\d+\])*)$")


@functools.cache
def _example(name: str) -> dict[str, Any]:
    with (STUDIES_DIR / f"{name}.toml").open("rb") as handle:
        return tomllib.load(handle)


def study_document(name: str = "iris-7a", **overrides: Any) -> dict[str, Any]:
    """A fresh deep copy of an example study file, with top-level fields replaced."""
    doc = copy.deepcopy(_example(name))
    doc.update(copy.deepcopy(overrides))
    return doc


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in path.split("."):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"bad path part {part!r} in {path!r}")
        steps.append(match["key"])
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", match["indexes"]))
    return steps


def _parent(doc: dict[str, Any], path: str) -> tuple[Any, str | int]:
    *head, last = _steps(path)
    node: Any = doc
    for step in head:
        node = node[step]
    return node, last


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set the field at a dotted path such as `sites[0].depot`; returns `doc` for chaining."""
    node, last = _parent(doc, path)
    node[last] = value
    return doc


def del_path(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """Remove the field (or list item) at a dotted path; returns `doc` for chaining."""
    node, last = _parent(doc, path)
    del node[last]
    return doc


def make_study(doc: dict[str, Any] | None = None) -> Study:
    """The domain study of a document, WITHOUT the cross-field `study_problems` check."""
    return to_domain(parse_document(study_document() if doc is None else doc, "<builder>"))


def audit_chain(count: int, chain: str = "iris-7a") -> list[AuditRecord]:
    """`count` correctly hashed and linked records of one chain, seq 1..count."""
    records: list[AuditRecord] = []
    prev_hash = GENESIS_HASH
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    for seq in range(1, count + 1):
        record = AuditRecord(
            chain=chain,
            seq=seq,
            occurred_at=start + timedelta(minutes=seq, microseconds=seq),
            actor_id="test:operator",
            actor_role="admin",
            action="site.activate",
            entity_type="site",
            entity_id=f"FR{seq:02d}",
            subject_id=None,
            reason=f"site {seq} ready",
            before={"active": False},
            after={"active": True},
            request_id=f"req-{seq}",
            prev_hash=prev_hash,
        )
        record = replace(record, hash=record.computed_hash())
        records.append(record)
        prev_hash = record.hash
    return records


def rehash(record: AuditRecord) -> AuditRecord:
    """The record with its hash recomputed, as a forger who knows the rule would do."""
    return replace(record, hash=record.computed_hash())
