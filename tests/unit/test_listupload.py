"""Uploaded CSV lists: a valid file loads; each kind of fault is named with its line."""

from __future__ import annotations

import pytest

from app.domain.listupload import HEADER, UploadProblem, UploadResult, parse_uploaded_list
from app.domain.randomization import Slot

ARMS = ("A", "B")
RATIO = {"A": 1, "B": 1}
STRATA = ("FR01", "FR02")
VALID_ROWS = [
    "FR01,1,100231,A,1",
    "FR01,2,100977,B,1",
    "FR01,3,104410,B,2",
    "FR01,4,101002,A,2",
    "FR01,5,102345,B,2",
    "FR01,6,109876,A,2",
    "FR02,1,105555,B,1",
    "FR02,2,106666,A,1",
]


def csv_text(rows: list[str], header: str = ",".join(HEADER)) -> str:
    return "\n".join([header, *rows]) + "\n"


def upload(text: str, block_sizes: tuple[int, ...] | None = (2, 4)) -> UploadResult:
    return parse_uploaded_list(text, ARMS, RATIO, STRATA, block_sizes)


def with_row(line: int, row: str) -> list[str]:
    """VALID_ROWS with file line `line` (the header is line 1) replaced by `row`."""
    rows = list(VALID_ROWS)
    rows[line - 2] = row
    return rows


def rejected(result: UploadResult) -> list[tuple[int, str]]:
    assert result.lists == {}
    assert not result.ok
    return [(p.line, p.message) for p in result.problems]


class TestValidFile:
    def test_loads_every_stratum_in_sequence_order(self) -> None:
        result = upload(csv_text(VALID_ROWS))

        assert result.ok
        assert result.problems == []
        assert list(result.lists) == ["FR01", "FR02"]
        assert result.lists["FR01"][:3] == [
            (Slot(1, 1, 2, "A"), 100231),
            (Slot(2, 1, 2, "B"), 100977),
            (Slot(3, 2, 4, "B"), 104410),
        ]
        assert [slot.sequence for slot, _ in result.lists["FR02"]] == [1, 2]

    def test_rows_in_any_order_bom_crlf_blank_lines_and_spaces(self) -> None:
        rows = [" FR02 , 2 , 106666 , A , 1", *VALID_ROWS[::-1][1:], ""]
        text = "\ufeff" + csv_text(rows).replace("\n", "\r\n")

        result = upload(text)

        assert result.ok
        assert result.lists == upload(csv_text(VALID_ROWS)).lists

    def test_block_sizes_are_not_checked_when_not_given(self) -> None:
        rows = [*VALID_ROWS, "FR02,3,107777,A,2", "FR02,4,108888,B,2"] + [
            f"FR02,{5 + i},{110000 + i},{'AB'[i % 2]},3" for i in range(6)
        ]

        assert upload(csv_text(rows), block_sizes=None).ok
        assert rejected(upload(csv_text(rows))) == [
            (12, "block 3 of stratum 'FR02' has 6 slots; allowed block sizes: 2, 4")
        ]


class TestHeaderAndShape:
    def test_bad_header(self) -> None:
        text = csv_text(VALID_ROWS, header="stratum,sequence,number,arm,block")

        assert rejected(upload(text)) == [
            (1, "the header must be exactly stratum,sequence,randomization_number,arm,block")
        ]

    @pytest.mark.parametrize("text", ["", "\n\n"])
    def test_empty_file(self, text: str) -> None:
        assert [line for line, _ in rejected(upload(text))] == [1]

    def test_header_only(self) -> None:
        assert rejected(upload(csv_text([]))) == [(1, "the file holds no slot after its header")]

    @pytest.mark.parametrize(
        ("row", "found"), [("FR01,2,100977,B", 4), ("FR01,2,100977,B,1,extra", 6)]
    )
    def test_wrong_number_of_cells(self, row: str, found: int) -> None:
        assert rejected(upload(csv_text(with_row(3, row)))) == [
            (3, f"expected 5 cells, found {found}")
        ]


class TestCellValues:
    @pytest.mark.parametrize(
        ("row", "message"),
        [
            ("FR01,two,100977,B,1", "sequence 'two' is not a whole number"),
            ("FR01,2,10x977,B,1", "randomization number '10x977' is not a whole number"),
            ("FR01,2,100977,B,1.0", "block '1.0' is not a whole number"),
            ("FR01,2,100977,B,-1", "block '-1' is not a whole number"),
            ("FR01,2,100977,B,0", "block must be 1 or more"),
            ("FR01,2,100977,C,1", "unknown arm 'C'"),
        ],
    )
    def test_bad_cell(self, row: str, message: str) -> None:
        problems = rejected(upload(csv_text(with_row(3, row))))

        assert (3, message) in problems
        assert {line for line, _ in problems} == {3}

    def test_unknown_stratum_is_reported_once(self) -> None:
        rows = [*VALID_ROWS, "DE01,1,199999,A,1"]

        assert rejected(upload(csv_text(rows))) == [(10, "unknown stratum 'DE01'")]

    def test_duplicate_randomization_number_names_both_lines(self) -> None:
        problems = rejected(upload(csv_text(with_row(8, "FR02,1,100977,B,1"))))

        assert problems == [(8, "randomization number 100977 is already used on line 3")]


class TestSequences:
    def test_duplicate_sequence_in_a_stratum(self) -> None:
        rows = [*VALID_ROWS[:2], "FR01,2,100978,A,1", *VALID_ROWS[2:]]

        problems = rejected(upload(csv_text(rows)))

        assert (4, "sequence 2 of stratum 'FR01' is already on line 3") in problems

    def test_gap_in_sequences(self) -> None:
        rows = [
            r for r in VALID_ROWS if not r.startswith("FR01,3,") and not r.startswith("FR01,4,")
        ]

        problems = rejected(upload(csv_text(rows)))

        assert (
            4,
            "stratum 'FR01' has no sequence 3 to 4: sequences must run 1, 2, 3... without gaps",
        ) in problems

    def test_sequences_must_start_at_one(self) -> None:
        rows = [r for r in VALID_ROWS if not r.startswith("FR02,1,")]

        problems = rejected(upload(csv_text(rows)))

        assert problems[0] == (
            8,
            "stratum 'FR02' has no sequence 1: sequences must run 1, 2, 3... without gaps",
        )


class TestBlocks:
    def test_unbalanced_block(self) -> None:
        problems = rejected(upload(csv_text(with_row(3, "FR01,2,100977,A,1"))))

        assert problems == [
            (
                2,
                "block 1 of stratum 'FR01' is unbalanced: A=2, B=0 is not a whole multiple "
                "of the ratio A:B = 1:1",
            )
        ]

    def test_block_size_not_allowed(self) -> None:
        rows = [*VALID_ROWS, *(f"FR02,{3 + i},{120000 + i},{'AB'[i % 2]},2" for i in range(6))]

        assert rejected(upload(csv_text(rows))) == [
            (10, "block 2 of stratum 'FR02' has 6 slots; allowed block sizes: 2, 4")
        ]

    def test_block_not_in_consecutive_sequences(self) -> None:
        # FR01 blocks by sequence: 1 1 | 2 2 | 1 1 ... block 1 resumes at sequence 5.
        rows = [
            "FR01,1,100231,A,1",
            "FR01,2,100977,B,1",
            "FR01,3,104410,B,2",
            "FR01,4,101002,A,2",
            "FR01,5,102345,B,1",
            "FR01,6,109876,A,1",
        ]

        problems = rejected(upload(csv_text(rows), block_sizes=None))

        assert problems == [
            (
                6,
                "block 1 of stratum 'FR01' is not in consecutive sequences (it resumes at "
                "sequence 5)",
            )
        ]


class TestEveryProblemAtOnce:
    def test_all_problems_in_line_order(self) -> None:
        rows = [
            "FR01,1,100231,A,1",
            "FR01,2,100231,B,1",  # line 3: number reused from line 2
            "FR01,x,100300,A,2",  # line 4: bad sequence
            "FR09,1,100400,A,1",  # line 5: unknown stratum
            "FR02,1,100500,Z,1",  # line 6: unknown arm
            "FR02,2,100600,A",  # line 7: four cells
        ]

        problems = rejected(upload(csv_text(rows, header="stratum,seq,number,arm,block")))

        assert [line for line, _ in problems] == [1, 3, 4, 5, 6, 7]
        assert all(isinstance(p, UploadProblem) for p in upload(csv_text(rows)).problems)
        assert str(upload(csv_text(rows)).problems[0]).startswith("line 3: ")

    def test_problems_in_other_strata_still_reported(self) -> None:
        rows = with_row(3, "FR01,2,100977,B,one")
        rows[-1] = "FR02,2,106666,B,1"  # line 9: FR02's block 1 becomes B, B

        problems = rejected(upload(csv_text(rows)))

        assert [line for line, _ in problems] == [3, 8]
        assert "unbalanced" in problems[1][1]

    def test_unknown_arm_is_not_also_called_unbalanced(self) -> None:
        problems = rejected(upload(csv_text(with_row(3, "FR01,2,100977,Z,1"))))

        assert problems == [(3, "unknown arm 'Z'")]
