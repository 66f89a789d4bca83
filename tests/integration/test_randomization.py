"""Lists, registration and randomization through the use cases, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from app.adapters.db.audit import iter_chain
from app.adapters.db.models import AllocationRow, RandomizationListRow, StratumRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.roles import Role
from app.domain.subjects import (
    InvalidStratum,
    NoActiveList,
    SiteNotActive,
    StratumExhausted,
    SubjectAlreadyRandomized,
    SubjectAlreadyRegistered,
    SubjectNotFound,
)
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study, set_mode, study_status
from tests.conftest import STUDIES_DIR, TEST_ACTOR

EDC = Principal("edc-test", Role.EDC, frozenset({"iris-7a", "iris-7b"}))
FR01_INVESTIGATOR = Principal(
    "inv-fr01", Role.INVESTIGATOR, frozenset({"iris-7a"}), {"iris-7a": frozenset({"FR01"})}
)
STRATA = {"shock": "yes", "age": "lt65"}


def _load(container: Container, text: str | None = None, tmp: Path | None = None) -> None:
    path = STUDIES_DIR / "iris-7a.toml"
    if text is not None:
        assert tmp is not None
        path = tmp / "iris-7a.toml"
        path.write_text(text, encoding="utf-8")
    study, document, sha = read_study_file(path)
    load_study(container.uow(TEST_ACTOR), study, document, sha)


@pytest.fixture
def study(container: Container, supply_ok: None) -> Iterator[Container]:
    _load(container)
    rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
    return container


def _register(c: Container, subject_id: str, site: str = "FR01", **strata: str) -> None:
    rnd.register_subject(c.uow(TEST_ACTOR), EDC, "iris-7a", subject_id, site, strata or STRATA)


def _randomize(c: Container, subject_id: str, who: Principal = EDC) -> rnd.Randomization:
    return rnd.randomize(c.uow(TEST_ACTOR), who, "iris-7a", subject_id, None)


class TestGenerateList:
    def test_every_stratum_of_every_site_with_sealed_slots(self, study: Container) -> None:
        with study.session_factory() as session:
            lists = session.scalars(select(RandomizationListRow)).all()
            assert [(x.mode, x.version, x.status) for x in lists] == [("live", 1, "active")]
            assert lists[0].seed_sealed is not None
            assert lists[0].seed_sealed.startswith(b"IWRS2")
            strata = session.scalars(select(StratumRow)).all()
            for stratum in strata:
                assert stratum.slots_sealed.startswith(b"IWRS2")
                for arm in (b"PLACEBO", b"CYT107"):
                    assert arm not in stratum.slots_sealed
            events = [e.action for e in iter_chain(session, "iris-7a")]
            assert "list.generated" in events
        info = study.uow(TEST_ACTOR)
        with info:
            active = info.lists.active("iris-7a", "live")
            assert active is not None
            strata = info.lists.strata(active)
            numbers = [n for rows in info.lists.slots(active).values() for _, n in rows]
        assert len(strata) == 4 * 2 * 2
        assert all(s.length >= 24 for s in strata)
        assert len(set(numbers)) == len(numbers)

    def test_same_seed_regenerates_the_stored_list(self, study: Container) -> None:
        uow = study.uow(TEST_ACTOR)
        with uow:
            info = uow.lists.active("iris-7a", "live")
            assert info is not None
            seed = uow.lists.seed(info)
            stored = uow.lists.slots(info)
            definition = uow.studies.get("iris-7a")
        assert seed is not None
        assert definition is not None
        plans = rnd.plan_lists(definition.study, "live", seed)
        assert {p.key: list(p.slots) for p in plans} == stored

    def test_regenerated_before_use_supersedes(self, study: Container) -> None:
        again = rnd.generate_list(study.uow(TEST_ACTOR), "test", "iris-7a")
        assert again.version == 2
        with study.session_factory() as session:
            statuses = session.scalars(
                select(RandomizationListRow.status).order_by(RandomizationListRow.version)
            ).all()
        assert statuses == ["superseded", "active"]

    def test_never_replaced_once_used(self, study: Container) -> None:
        _register(study, "S-1")
        _randomize(study, "S-1")
        with pytest.raises(rnd.ListInUse):
            rnd.generate_list(study.uow(TEST_ACTOR), "test", "iris-7a")


class TestRegister:
    def test_registered_and_audited(self, study: Container) -> None:
        _register(study, "S-1")
        with study.session_factory() as session:
            events = [(e.action, e.subject_id) for e in iter_chain(session, "iris-7a")]
        assert ("subject.registered", "S-1") in events

    def test_twice_refused(self, study: Container) -> None:
        _register(study, "S-1")
        with pytest.raises(SubjectAlreadyRegistered):
            _register(study, "S-1", site="FR02")

    @pytest.mark.parametrize(
        "strata",
        [{"shock": "yes"}, {"shock": "maybe", "age": "lt65"}, {**STRATA, "sex": "f"}],
    )
    def test_every_factor_with_a_known_level(
        self, study: Container, strata: dict[str, str]
    ) -> None:
        with pytest.raises(InvalidStratum):
            rnd.register_subject(study.uow(TEST_ACTOR), EDC, "iris-7a", "S-1", "FR01", strata)

    def test_unknown_inactive_and_foreign_sites(self, study: Container) -> None:
        with pytest.raises(rnd.InvalidSite):
            _register(study, "S-1", site="US01")
        with pytest.raises(SiteNotActive):
            _register(study, "S-1", site="FR04")
        with pytest.raises(rnd.SiteForbidden):
            rnd.register_subject(
                study.uow(TEST_ACTOR), FR01_INVESTIGATOR, "iris-7a", "S-1", "FR02", STRATA
            )


class TestRandomize:
    def test_takes_slots_in_list_order(self, study: Container) -> None:
        for i in range(1, 8):
            _register(study, f"S-{i}")
        results = [_randomize(study, f"S-{i}") for i in range(1, 8)]
        uow = study.uow(TEST_ACTOR)
        with uow:
            info = uow.lists.active("iris-7a", "live")
            assert info is not None
            listed = uow.lists.slots(info)["FR01|shock=yes|age=lt65"]
            allocated = uow.lists.allocations("iris-7a", "live")
        assert [r.randomization_number for r in results] == [n for _, n in listed[:7]]
        assert [arm for _, arm, _ in allocated] == [slot.arm for slot, _ in listed[:7]]
        assert results[0].stratum == "FR01|shock=yes|age=lt65"

    def test_exactly_once(self, study: Container) -> None:
        _register(study, "S-1")
        _randomize(study, "S-1")
        with pytest.raises(SubjectAlreadyRandomized):
            _randomize(study, "S-1")
        with study.session_factory() as session:
            assert len(session.scalars(select(AllocationRow)).all()) == 1

    def test_unknown_or_foreign_site_subject_not_found(self, study: Container) -> None:
        with pytest.raises(SubjectNotFound):
            _randomize(study, "nobody")
        _register(study, "S-2", site="FR02")
        with pytest.raises(SubjectNotFound):
            _randomize(study, "S-2", who=FR01_INVESTIGATOR)

    def test_refused_for_supply_consumes_nothing(
        self, study: Container, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app.domain.dispensing import InsufficientSupply

        _register(study, "S-1")
        monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: False)
        with pytest.raises(InsufficientSupply):
            _randomize(study, "S-1")
        monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
        first = _randomize(study, "S-1")
        uow = study.uow(TEST_ACTOR)
        with uow:
            info = uow.lists.active("iris-7a", "live")
            assert info is not None
            listed = uow.lists.slots(info)["FR01|shock=yes|age=lt65"]
        assert first.randomization_number == listed[0][1]

    def test_no_list_in_this_mode(self, study: Container) -> None:
        set_mode(study.uow(TEST_ACTOR), "iris-7a", "uat")
        _register(study, "T-1")
        with pytest.raises(NoActiveList):
            _randomize(study, "T-1")
        rnd.generate_list(study.uow(TEST_ACTOR), "test", "iris-7a")
        assert _randomize(study, "T-1").randomization_number > 0
        set_mode(study.uow(TEST_ACTOR), "iris-7a", "live")
        _register(study, "L-1")
        live = _randomize(study, "L-1")
        uow = study.uow(TEST_ACTOR)
        with uow:
            assert len(uow.lists.allocations("iris-7a", "live")) == 1
            assert len(uow.lists.allocations("iris-7a", "uat")) == 1
        assert live.randomization_number > 0

    def test_stratum_exhausted_then_running_low_recorded(
        self, container: Container, supply_ok: None, tmp_path: Path
    ) -> None:
        text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
        text = text.replace("block_sizes = [3, 6]", "block_sizes = [3]")
        text = text.replace("cap_per_stratum = 24", "cap_per_stratum = 3")
        text = text.replace("low_warning = 3", "low_warning = 1")
        _load(container, text, tmp_path)
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        for i in range(1, 5):
            _register(container, f"S-{i}")
        for i in range(1, 4):
            _randomize(container, f"S-{i}")
        with pytest.raises(StratumExhausted):
            _randomize(container, "S-4")
        with container.session_factory() as session:
            actions = [e.action for e in iter_chain(session, "iris-7a")]
        assert actions.count("stratum.running_low") == 1
        status = study_status(container.uow(TEST_ACTOR), "iris-7a")
        assert status.strata_exhausted == ("FR01|shock=yes|age=lt65",)
        assert status.strata_running_low == ()

    def test_weight_outside_every_band_changes_nothing(self, study: Container) -> None:
        from app.domain.dispensing import WeightOutOfRange

        _register(study, "S-1")
        with pytest.raises(WeightOutOfRange):
            rnd.randomize(study.uow(TEST_ACTOR), EDC, "iris-7a", "S-1", Decimal("12"))
        with study.session_factory() as session:
            assert session.scalars(select(AllocationRow)).all() == []


class TestMinimization:
    def test_minimized_allocation_with_its_trace(
        self,
        container: Container,
        supply_ok: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A fixed seed: the biased coin (p = 0.8) is drawn from it, so the balance asserted
        # below is the same on every run (with a fresh seed it was exceeded now and then;
        # the statistical bound is the domain's property test's, over many trials).
        monkeypatch.setattr(rnd.secrets, "token_bytes", lambda n: bytes(range(n)))
        text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
        text = text.replace(
            'method = "permuted_block"\nblock_sizes = [3, 6]',
            'method = "minimization"\nblock_sizes = []',
        )
        text += (
            '\n[randomization.minimization]\nprobability = 0.8\nimbalance = "range"\n'
            'factors = [{ factor = "site", weight = 1.0 }, { factor = "shock", weight = 2.0 },'
            ' { factor = "age", weight = 1.0 }]\n'
        )
        _load(container, text, tmp_path)
        rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
        arms = []
        for i in range(12):
            _register(container, f"M-{i}", site=("FR01", "FR02")[i % 2])
            result = _randomize(container, f"M-{i}")
            assert result.stratum == "*"
        uow = container.uow(TEST_ACTOR)
        with uow:
            allocated = uow.lists.allocations("iris-7a", "live")
        arms = [arm for _, arm, _ in allocated]
        counts = {arm: arms.count(arm) for arm in set(arms)}
        assert len(arms) == 12
        assert max(counts.values()) - min(counts.values()) <= 2, counts
        with container.session_factory() as session:
            traces = session.scalars(select(AllocationRow.trace_sealed)).all()
        assert all(t is not None and t.startswith(b"IWRS2") for t in traces)
