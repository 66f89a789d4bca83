"""List QC (with regeneration from the seed), uploads and stratum extension."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from app.adapters.crypto.envelope import stratum_size
from app.adapters.db.audit import iter_chain
from app.adapters.db.models import RandomizationListRow, StratumRow, StudyRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.sealed import Sealed
from app.domain.subjects import StratumExhausted
from app.services import lists
from app.services import randomization as rnd
from app.services.studies import load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR
from tests.integration.test_randomization import EDC, STRATA

KEY = "FR01|shock=yes|age=lt65"


def _load_text(container: Container, tmp_path: Path, text: str) -> None:
    path = tmp_path / "iris-7a.toml"
    path.write_text(text, encoding="utf-8")
    study, document, sha = read_study_file(path)
    load_study(container.uow(TEST_ACTOR), study, document, sha)


def _example() -> str:
    return (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")


class TestQC:
    def test_generated_list_matches_its_seed(self, container: Container, supply_ok: None) -> None:
        study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        report = lists.qc_as_dict(lists.list_qc(container.uow(TEST_ACTOR), "iris-7a"))
        assert report["matches_seed"] is True
        assert report["unbalanced_blocks"] == 0
        assert len(report["strata"]) == 16
        counts = report["counts"]
        assert counts["PLACEBO"] == counts["CYT107_QW"] == counts["CYT107_BIW"]
        assert 0 < report["predictability"] < 1
        assert set(report["block_sizes_used"]) <= {"3", "6"}

    def test_a_changed_slot_is_found(self, container: Container, supply_ok: None) -> None:
        study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        with container.session_factory() as session:
            study_id = session.scalar(select(StudyRow.id))
            assert study_id is not None
            cipher = container.keys.cipher(session, study_id, "iris-7a")
            list_id = session.scalar(select(RandomizationListRow.id))
            stratum = session.scalars(select(StratumRow).where(StratumRow.key == KEY)).one()
            record = f"{list_id}:{KEY}"
            rows = json.loads(cipher.open("stratum", record, Sealed(stratum.slots_sealed)))
            rows[0][0] = "PLACEBO" if rows[0][0] != "PLACEBO" else "CYT107_BIW"
            stratum.slots_sealed = cipher.seal(
                "stratum", record, json.dumps(rows).encode(), size=stratum_size(len(rows), 10)
            ).envelope
            session.commit()
        report = lists.qc_as_dict(lists.list_qc(container.uow(TEST_ACTOR), "iris-7a"))
        assert report["matches_seed"] is False
        assert report["differing_strata"] == [KEY]
        assert report["unbalanced_blocks"] == 1


def _csv(container: Container) -> str:
    uow = container.uow(TEST_ACTOR)
    with uow:
        stored = uow.studies.get("iris-7a")
    assert stored is not None
    rows = ["stratum,sequence,randomization_number,arm,block"]
    for plan in rnd.plan_lists(stored.study, "live", secrets.token_bytes(32)):
        for slot, number in plan.slots:
            rows.append(f"{plan.key},{slot.sequence},{number},{slot.arm},{slot.block}")
    return "\n".join(rows) + "\n"


class TestUpload:
    @pytest.fixture
    def uploaded_study(self, container: Container, tmp_path: Path, supply_ok: None) -> Container:
        _load_text(
            container,
            tmp_path,
            _example().replace('method = "permuted_block"', 'method = "uploaded_list"'),
        )
        return container

    def test_valid_file_loads_and_randomizes(self, uploaded_study: Container) -> None:
        text = _csv(uploaded_study)
        info = lists.upload_list(uploaded_study.uow(TEST_ACTOR), "stat", "iris-7a", text)
        assert info.method == "uploaded_list"
        rnd.register_subject(uploaded_study.uow(TEST_ACTOR), EDC, "iris-7a", "U-1", "FR01", STRATA)
        result = rnd.randomize(uploaded_study.uow(TEST_ACTOR), EDC, "iris-7a", "U-1", None)
        first = next(line for line in text.splitlines() if line.startswith(f"{KEY},1,"))
        assert result.randomization_number == int(first.split(",")[2])

    def test_every_problem_by_line_and_nothing_loaded(self, uploaded_study: Container) -> None:
        lines = _csv(uploaded_study).splitlines()
        lines[2] = lines[2].rsplit(",", 2)[0] + ",NOT_AN_ARM," + lines[2].rsplit(",", 1)[1]
        number = lines[5].split(",")[2]
        cells = lines[6].split(",")
        cells[2] = number
        lines[6] = ",".join(cells)
        with pytest.raises(lists.ListUploadRejected) as caught:
            lists.upload_list(uploaded_study.uow(TEST_ACTOR), "stat", "iris-7a", "\n".join(lines))
        text = "\n".join(caught.value.problems)
        assert "line 3:" in text
        assert "line 7:" in text
        with uploaded_study.session_factory() as session:
            assert session.scalars(select(RandomizationListRow)).all() == []

    def test_generated_study_refuses_uploads(self, container: Container, supply_ok: None) -> None:
        study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        with pytest.raises(rnd.WrongMethod):
            lists.upload_list(container.uow(TEST_ACTOR), "stat", "iris-7a", "x")


class TestExtend:
    def test_exhausted_stratum_extended_from_the_same_seed(
        self, container: Container, tmp_path: Path, supply_ok: None
    ) -> None:
        text = _example().replace("cap_per_stratum = 24", "cap_per_stratum = 3")
        _load_text(container, tmp_path, text.replace("block_sizes = [3, 6]", "block_sizes = [3]"))
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        for i in range(5):
            rnd.register_subject(
                container.uow(TEST_ACTOR), EDC, "iris-7a", f"E-{i}", "FR01", STRATA
            )
        for i in range(3):
            rnd.randomize(container.uow(TEST_ACTOR), EDC, "iris-7a", f"E-{i}", None)
        with pytest.raises(StratumExhausted):
            rnd.randomize(container.uow(TEST_ACTOR), EDC, "iris-7a", "E-3", None)
        with pytest.raises(Exception, match="reason"):
            lists.extend_stratum(container.uow(TEST_ACTOR), "iris-7a", KEY, 3, "  ")
        result = lists.extend_stratum(
            container.uow(TEST_ACTOR), "iris-7a", KEY, 3, "more patients than planned at FR01"
        )
        assert (result.added, result.length) == (3, 6)
        rnd.randomize(container.uow(TEST_ACTOR), EDC, "iris-7a", "E-3", None)
        report = lists.qc_as_dict(lists.list_qc(container.uow(TEST_ACTOR), "iris-7a"))
        assert report["matches_seed"] is True
        with container.session_factory() as session:
            events = [(e.action, e.reason) for e in iter_chain(session, "iris-7a")]
        assert ("stratum.extended", "more patients than planned at FR01") in events

    def test_unknown_stratum(self, container: Container, supply_ok: None) -> None:
        study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        with pytest.raises(lists.UnknownStratum):
            lists.extend_stratum(container.uow(TEST_ACTOR), "iris-7a", "XX99|a=b", 3, "why")
