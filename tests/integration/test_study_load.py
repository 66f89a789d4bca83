"""Loading and updating study definitions through the unit of work."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from app.adapters.db.audit import chain_head, iter_chain
from app.adapters.db.models import SiteRow, StudyKeyRow, StudyRow, SubjectRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.audit import verify_chain
from app.domain.errors import AllocationChangeRefused, Conflict, InvalidStudyDefinition
from app.services.studies import get_study, list_studies, load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _example(name: str = "iris-7a") -> str:
    return (STUDIES_DIR / f"{name}.toml").read_text(encoding="utf-8")


def _load(container: Container, path: Path):  # type: ignore[no-untyped-def]
    study, document, sha = read_study_file(path)
    return load_study(container.uow(TEST_ACTOR), study, document, sha)


def _randomize_someone(container: Container, slug: str) -> None:
    with container.session_factory() as session:
        study = session.scalars(select(StudyRow).where(StudyRow.slug == slug)).one()
        site = session.scalars(select(SiteRow).where(SiteRow.study_id == study.id)).first()
        assert site is not None
        now = datetime.now(UTC)
        session.add(
            SubjectRow(
                study_id=study.id,
                site_id=site.id,
                subject_code="S-001",
                status="randomized",
                strata={},
                registered_at=now,
                randomized_at=now,
            )
        )
        session.commit()


class TestLoadStudy:
    def test_creates_both_examples_with_sites_and_audit(self, container: Container) -> None:
        for name in ("iris-7a", "iris-7b"):
            result = _load(container, STUDIES_DIR / f"{name}.toml")
            assert result.created
            assert result.version == 1
        stored = list_studies(container.uow(TEST_ACTOR), visible=None)
        assert [s.slug for s in stored] == ["iris-7a", "iris-7b"]
        with container.session_factory() as session:
            sites = session.scalars(select(SiteRow.code).order_by(SiteRow.code)).all()
            assert sites == ["FR01", "FR02", "FR03", "FR04", "US01", "US02", "US03"]
            events = list(iter_chain(session, "iris-7a"))
            assert [e.action for e in events] == ["study.created"]
            assert events[0].actor_id == TEST_ACTOR.actor_id
            assert verify_chain("iris-7a", events, chain_head(session, "iris-7a")) is None

    def test_reload_unchanged_writes_nothing(self, container: Container) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        again = _load(container, STUDIES_DIR / "iris-7a.toml")
        assert not again.changed
        assert again.version == 1
        with container.session_factory() as session:
            assert len(list(iter_chain(session, "iris-7a"))) == 1

    def test_update_bumps_version_and_names_sections(
        self, container: Container, tmp_path: Path
    ) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        changed = _example().replace("do_not_dispense_days = 30", "do_not_dispense_days = 21")
        result = _load(container, _write(tmp_path, changed))
        assert result.version == 2
        assert result.changed_sections == ("supply",)
        stored = get_study(container.uow(TEST_ACTOR), "iris-7a", visible=None)
        assert stored.study.supply.do_not_dispense_days == 21

    def test_definition_is_ciphertext_at_rest(self, container: Container) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        with container.session_factory() as session:
            row = session.scalars(select(StudyRow)).one()
            assert row.definition_sealed.startswith(b"IWRS2")
            for secret in (b"CYT107_QW", b"Placebo", b"KT_IL7", b"KT_PBO"):
                assert secret not in row.definition_sealed
            key = session.scalars(select(StudyKeyRow)).one()
            assert key.kek_id
            assert len(key.wrapped_dek) > 32

    def test_invalid_definition_writes_nothing(self, container: Container, tmp_path: Path) -> None:
        bad = _example().replace("block_sizes = [3, 6]", "block_sizes = [4]")
        with pytest.raises(InvalidStudyDefinition):
            _load(container, _write(tmp_path, bad))
        with container.session_factory() as session:
            assert session.scalars(select(StudyRow)).all() == []


class TestFrozenAllocation:
    def test_allocation_change_refused_once_randomized(
        self, container: Container, tmp_path: Path
    ) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        _randomize_someone(container, "iris-7a")
        ratio = _example().replace("CYT107_BIW = 1\n", "CYT107_BIW = 2\n", 1)
        ratio = ratio.replace("block_sizes = [3, 6]", "block_sizes = [4, 8]")
        with pytest.raises(AllocationChangeRefused, match="allocation ratio"):
            _load(container, _write(tmp_path, ratio))
        stored = get_study(container.uow(TEST_ACTOR), "iris-7a", visible=None)
        assert stored.version == 1
        assert stored.study.allocation_ratio["CYT107_BIW"] == 1

    def test_label_change_allowed_once_randomized(
        self, container: Container, tmp_path: Path
    ) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        _randomize_someone(container, "iris-7a")
        relabel = _example().replace('label = "Septic shock"', 'label = "Septic shock (SEP-3)"')
        assert _load(container, _write(tmp_path, relabel)).version == 2

    def test_allocation_change_allowed_before_anyone_is_randomized(
        self, container: Container, tmp_path: Path
    ) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        changed = _example().replace("block_sizes = [3, 6]", "block_sizes = [6]")
        assert _load(container, _write(tmp_path, changed)).version == 2

    def test_site_with_subjects_cannot_be_removed(
        self, container: Container, tmp_path: Path
    ) -> None:
        _load(container, STUDIES_DIR / "iris-7a.toml")
        _randomize_someone(container, "iris-7a")
        text = _example()
        start = text.index('[[sites]]\ncode = "FR01"')
        end = text.index("[[sites]]", start + 1)
        with pytest.raises(Conflict, match="FR01"):
            _load(container, _write(tmp_path, text[:start] + text[end:]))
