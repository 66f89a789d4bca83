"""Validation of a randomization list uploaded by a statistician as CSV.

The file is UTF-8 text (a leading byte-order mark is ignored), comma-separated, one slot per
line. Line 1 is exactly the header `stratum,sequence,randomization_number,arm,block`; each
following line is one slot. Blank lines are ignored; cells are taken without surrounding
spaces. Line numbers are those of the file, starting at 1.

Every problem is reported, each with its line, so the statistician fixes the file in one go:
- the header differs from the one above (line 1);
- a line does not have 5 cells;
- sequence, randomization number or block is not a whole number written in digits, or
  sequence or block is 0;
- the arm or the stratum is not one of the study's;
- a randomization number is used twice (the later line, naming the earlier one);
- a sequence appears twice in a stratum (the later line, naming the earlier one);
- a stratum's sequences do not run 1, 2, ..., n (the line after each gap);
- in sequence order, a block's slots are not consecutive (the first line breaking the run);
- a block is unbalanced: its arm counts are not k times the ratio for one whole k (the
  block's first line in sequence order);
- a block's size (its number of slots) is not an allowed block size, when sizes are given;
- the file holds no slot at all (line 1).
Consequences of a problem already reported are not reported again: a row of unknown stratum
takes no part in the stratum checks; a block with an unknown arm is not also called
unbalanced; and in a stratum with a row whose sequence or block cannot be read (or whose
cell count is wrong), gaps, balance and block sizes are not judged, as that row is missing
from them.

A block is identified by its stratum and block number; block numbers are kept as given, so
they may run per stratum or across the file. When there is no problem, `lists` holds each
stratum's slots in sequence order with their randomization numbers, each slot's
`block_size` being its block's number of slots; otherwise `lists` is empty.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from app.domain.randomization import Slot

HEADER = ("stratum", "sequence", "randomization_number", "arm", "block")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class UploadProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class UploadResult:
    problems: list[UploadProblem]
    lists: dict[str, list[tuple[Slot, int]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    stratum: str
    sequence: int
    number: int | None  # None when its cell is not a number (already reported)
    arm: str
    block: int | None  # same


def _whole(cell: str, name: str, *, positive: bool) -> tuple[int | None, str | None]:
    if not _DIGITS.fullmatch(cell):
        return None, f"{name} {cell!r} is not a whole number"
    value = int(cell)
    if positive and value == 0:
        return None, f"{name} must be 1 or more"
    return value, None


def _ratio_text(ratio: Mapping[str, int]) -> str:
    arms = sorted(ratio)
    return f"{':'.join(arms)} = {':'.join(str(ratio[arm]) for arm in arms)}"


def _sequence_problems(
    stratum: str, rows: list[_Row], report: list[UploadProblem], *, gaps: bool
) -> list[_Row]:
    """Report repeated and missing sequences; the rows in sequence order, repeats dropped."""
    unique: list[_Row] = []
    seen_at: dict[int, int] = {}
    expected = 1
    for row in sorted(rows, key=lambda row: (row.sequence, row.line)):
        if row.sequence in seen_at:
            report.append(
                UploadProblem(
                    row.line,
                    f"sequence {row.sequence} of stratum {stratum!r} is already on line "
                    f"{seen_at[row.sequence]}",
                )
            )
            continue
        seen_at[row.sequence] = row.line
        if gaps and row.sequence != expected:
            gap = (
                str(expected)
                if row.sequence == expected + 1
                else f"{expected} to {row.sequence - 1}"
            )
            report.append(
                UploadProblem(
                    row.line,
                    f"stratum {stratum!r} has no sequence {gap}: sequences must run "
                    "1, 2, 3... without gaps",
                )
            )
        expected = row.sequence + 1
        unique.append(row)
    return unique


def _block_problems(
    stratum: str,
    rows: list[_Row],
    known_arms: Collection[str],
    ratio: Mapping[str, int],
    block_sizes: Collection[int] | None,
    report: list[UploadProblem],
    *,
    composition: bool,
) -> dict[int, int]:
    """Report blocks out of run and, with `composition`, unbalanced or of a refused size."""
    members: dict[int, list[_Row]] = {}
    finished: set[int] = set()
    previous: int | None = None
    for row in rows:
        if row.block is None:
            continue
        if row.block != previous:
            if row.block in finished:
                report.append(
                    UploadProblem(
                        row.line,
                        f"block {row.block} of stratum {stratum!r} is not in consecutive "
                        f"sequences (it resumes at sequence {row.sequence})",
                    )
                )
            if previous is not None:
                finished.add(previous)
            previous = row.block
        members.setdefault(row.block, []).append(row)

    ratio_sum = sum(ratio.values())
    sizes: dict[int, int] = {}
    for block, block_rows in members.items():
        size = sizes[block] = len(block_rows)
        if not composition:
            continue
        first = block_rows[0].line
        counts = Counter(row.arm for row in block_rows)
        balanced = not size % ratio_sum and all(
            counts[arm] == size // ratio_sum * ratio[arm] for arm in ratio
        )
        # A block holding an unknown arm is reported for that arm alone.
        if not balanced and all(arm in known_arms for arm in counts):
            found = ", ".join(f"{arm}={counts[arm]}" for arm in sorted(ratio))
            report.append(
                UploadProblem(
                    first,
                    f"block {block} of stratum {stratum!r} is unbalanced: {found} is not a "
                    f"whole multiple of the ratio {_ratio_text(ratio)}",
                )
            )
        if block_sizes is not None and size not in block_sizes:
            allowed = ", ".join(str(s) for s in sorted(block_sizes))
            report.append(
                UploadProblem(
                    first,
                    f"block {block} of stratum {stratum!r} has {size} slots; allowed block "
                    f"sizes: {allowed}",
                )
            )
    return sizes


def parse_uploaded_list(
    text: str,
    arms: Collection[str],
    ratio: Mapping[str, int],
    strata: Collection[str],
    block_sizes: Collection[int] | None,
) -> UploadResult:
    """Every problem of the uploaded CSV, or its lists when it has none."""
    report: list[UploadProblem] = []
    known_arms, known_strata = set(arms), set(strata)
    lines = text.removeprefix("\ufeff").splitlines()
    if not lines or [cell.strip() for cell in next(csv.reader(lines[:1]), [])] != list(HEADER):
        report.append(UploadProblem(1, f"the header must be exactly {','.join(HEADER)}"))

    rows: list[_Row] = []
    number_at: dict[int, int] = {}
    damaged: set[str] = set()  # strata with a row whose sequence or block is unreadable
    reader = csv.reader(lines[1:])
    for cells in reader:
        line = reader.line_num + 1  # the header is line 1
        if all(not cell.strip() for cell in cells):
            continue
        if len(cells) != len(HEADER):
            report.append(UploadProblem(line, f"expected {len(HEADER)} cells, found {len(cells)}"))
            damaged.add(cells[0].strip())
            continue
        stratum, sequence_text, number_text, arm, block_text = (c.strip() for c in cells)
        messages: list[str] = []
        numbers: list[int | None] = []
        for cell, name, positive in (
            (sequence_text, "sequence", True),
            (number_text, "randomization number", False),
            (block_text, "block", True),
        ):
            value, message = _whole(cell, name, positive=positive)
            numbers.append(value)
            messages += [message] if message else []
        sequence, number, block = numbers
        if arm not in known_arms:
            messages.append(f"unknown arm {arm!r}")
        if stratum not in known_strata:
            messages.append(f"unknown stratum {stratum!r}")
        if number is not None:
            if number in number_at:
                messages.append(
                    f"randomization number {number} is already used on line {number_at[number]}"
                )
            else:
                number_at[number] = line
        report.extend(UploadProblem(line, message) for message in messages)
        if sequence is None or block is None:
            damaged.add(stratum)
        if sequence is not None and stratum in known_strata:
            rows.append(_Row(line, stratum, sequence, number, arm, block))
    if not rows and not report:
        report.append(UploadProblem(1, "the file holds no slot after its header"))

    by_stratum: dict[str, list[_Row]] = {}
    for row in rows:
        by_stratum.setdefault(row.stratum, []).append(row)
    lists: dict[str, list[tuple[Slot, int]]] = {}
    for stratum, stratum_rows in sorted(by_stratum.items()):
        # A stratum missing an unreadable row would also show the gaps and broken blocks
        # that row leaves; those follow from the problem already reported, so are not.
        whole = stratum not in damaged
        ordered = _sequence_problems(stratum, stratum_rows, report, gaps=whole)
        sizes = _block_problems(
            stratum, ordered, known_arms, ratio, block_sizes, report, composition=whole
        )
        lists[stratum] = [
            (Slot(row.sequence, row.block, sizes[row.block], row.arm), row.number)
            for row in ordered
            if row.block is not None and row.number is not None
        ]
    if report:
        return UploadResult(sorted(report, key=lambda problem: problem.line))
    return UploadResult([], lists)
