"""The statistician's exports as CSV, for the API and the web pages alike."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

LIST_COLUMNS = (
    "stratum",
    "sequence",
    "randomization_number",
    "block",
    "block_size",
    "arm",
    "subject_id",
    "allocated_at",
    "stratum_corrected",  # the taking subject's stratum as corrected (empty: never corrected)
)
POOLED_COLUMNS = (
    "study",
    "site",
    "subject",
    "stratum",
    "randomization_number",
    "arm",
    "randomized_at",
    "unblinded",
    "stratum_corrected",  # as corrected after randomization; `stratum` is as randomized
)


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def list_csv(lines: Iterable[Any]) -> str:
    """The randomization list: one line per slot, with its arm and the subject that took it."""
    return to_csv(
        LIST_COLUMNS,
        (
            (
                x.stratum,
                x.sequence,
                x.randomization_number,
                x.block,
                x.block_size,
                x.arm,
                x.subject_id,
                iso(x.allocated_at),
                x.stratum_corrected,
            )
            for x in lines
        ),
    )


def pooled_csv(rows: Iterable[Any]) -> str:
    """Every allocation of the studies named, one line per randomized subject."""
    return to_csv(
        POOLED_COLUMNS,
        (
            (
                r.study,
                r.site,
                r.subject_id,
                r.stratum,
                r.randomization_number,
                r.arm,
                iso(r.randomized_at),
                "true" if r.unblinded else "false",
                r.stratum_corrected,
            )
            for r in rows
        ),
    )
