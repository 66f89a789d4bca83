"""`iwrs simulate`'s study files: a kit list planned for the simulated enrollment."""

from __future__ import annotations

import tomllib
from pathlib import Path

from app.adapters.simulation.service import kit_list_rounds, study_file
from tests.conftest import STUDIES_DIR


def example(slug: str = "iris-7a") -> dict[str, object]:
    return tomllib.loads((STUDIES_DIR / f"{slug}.toml").read_text(encoding="utf-8"))


class TestKitListRounds:
    def test_every_visit_at_the_heaviest_band_for_each_sites_share(self) -> None:
        # IRIS-7A: 3 active sites; 24 subjects -> 8 a site x 8 visits x 4 kits = 256 kits,
        # 16 resupply levels of 16.
        assert kit_list_rounds(example(), 24) == 16

    def test_never_fewer_than_the_files_own(self) -> None:
        assert kit_list_rounds(example(), 1) == 3


def test_the_study_file_carries_the_planned_rounds_and_sites(tmp_path: Path) -> None:
    path = study_file("iris-7b", 6, tmp_path, subjects=60)

    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    assert [s["code"] for s in doc["sites"]] == [f"US{i:02d}" for i in range(1, 7)]
    assert doc["supply"]["resupply_rounds"] == 20  # 10 a site x 8 visits x 4 kits / 16
