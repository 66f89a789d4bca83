"""The pages added for kit replacement, arms after the lock and the resupply settings: each
calls the API's use case, carries the CSRF token, and keeps the blind."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.adapters.web.routes.pharmacy import SupplySettingsView
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.roles import Role
from app.domain.study import SupplyLevels
from app.services import blinding
from app.services import subjects as subjects_service
from app.services.studies import get_study
from tests.conftest import TEST_ACTOR
from tests.web.conftest import FakeClock, Person, csrf, login
from tests.web.test_pages import BLIND_LEAKS, STUDY, UI, randomize, register, trail

KIT_TYPES = re.compile(r"KT_\w+|kit_type", re.IGNORECASE)


def _lock(container: Container) -> None:
    statistician = Principal(
        "web-tests", Role.UNBLINDED_STATISTICIAN, frozenset({STUDY}), {STUDY: None}
    )
    blinding.lock_study(container.uow(TEST_ACTOR), statistician, STUDY, "database lock")


class TestKitReplacement:
    def test_a_damaged_kit_is_replaced_and_only_the_new_number_is_shown(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-101")
        randomize(web, "FR01-101", "72")
        subject = web.get(f"{UI}/subjects/FR01-101")
        assert "Replace a damaged or lost kit" in subject.text
        cell = re.search(r'<td class="kits">([^<]+)</td>', subject.text)
        assert cell is not None
        old = cell.group(1).split(", ")[0]
        form = {
            "csrf_token": csrf(subject.text),
            "visit": "D1",
            "kit_number": old,
            "reason": "damaged",
        }
        forged = web.post(
            f"{UI}/subjects/FR01-101/replacements", data={**form, "csrf_token": "forged"}
        )
        assert forged.status_code == 403
        replaced = web.post(f"{UI}/subjects/FR01-101/replacements", data=form)
        assert replaced.status_code == 200, replaced.text
        new = re.search(r'id="replacement-kit-number"[^>]*>(\d{8})<', replaced.text)
        assert new is not None
        assert new.group(1) != old
        assert not BLIND_LEAKS.search(replaced.text)
        assert not KIT_TYPES.search(replaced.text)
        assert "kit.replaced" in [a for a, _ in trail(trial)]
        assert "Returned" in web.get(f"{UI}/kits", params={"kit_number": old}).text
        again = web.post(f"{UI}/subjects/FR01-101/replacements", data=form)
        assert again.status_code == 409
        assert "not one the subject holds" in again.text
        assert not BLIND_LEAKS.search(again.text)

    def test_a_reason_is_required_and_a_pharmacist_may_replace(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-102")
        randomize(web, "FR01-102", "60")
        web.cookies.clear()
        login(web, person(Role.PHARMACIST), clock)
        subject = web.get(f"{UI}/subjects/FR01-102")
        cell = re.search(r'<td class="kits">([^<]+)</td>', subject.text)
        assert cell is not None
        old = cell.group(1).split(", ")[0]
        form = {"csrf_token": csrf(subject.text), "visit": "D1", "kit_number": old}
        missing = web.post(f"{UI}/subjects/FR01-102/replacements", data=form)
        assert missing.status_code == 422
        lost = web.post(f"{UI}/subjects/FR01-102/replacements", data={**form, "reason": "lost"})
        assert lost.status_code == 200, lost.text
        assert 'id="replacement-kit-number"' in lost.text
        assert not BLIND_LEAKS.search(lost.text)


class TestArmsAfterLock:
    def test_refused_before_the_lock_then_shown_and_audited(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        login(web, investigator, clock)
        register(web, "FR01-201")
        randomize(web, "FR01-201")
        form = web.get(f"{UI}/arms")
        assert form.status_code == 200
        assert not BLIND_LEAKS.search(form.text)
        data = {"csrf_token": csrf(form.text), "subject_id": "FR01-201"}
        early = web.post(f"{UI}/arms", data=data)
        assert early.status_code == 409
        assert "The study is not locked yet" in early.text
        assert not BLIND_LEAKS.search(early.text)
        assert web.post(f"{UI}/arms", data={**data, "csrf_token": "x"}).status_code == 403
        _lock(trial)
        shown = web.post(f"{UI}/arms", data=data)
        assert shown.status_code == 200, shown.text
        assert re.search(r'id="arm">[^<]+<', shown.text)
        assert shown.headers["cache-control"] == "no-store"
        assert ("subject.arm_read", f"user:{investigator.email}") in trail(trial)
        unknown = web.post(f"{UI}/arms", data={**data, "subject_id": "NOPE-1"})
        assert unknown.status_code == 404
        assert not BLIND_LEAKS.search(unknown.text)

    def test_other_sites_and_other_roles_are_refused(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-202")
        randomize(web, "FR01-202")
        _lock(trial)
        web.cookies.clear()
        login(web, person(Role.INVESTIGATOR, sites=["FR02"]), clock)
        form = web.get(f"{UI}/arms")
        other = web.post(
            f"{UI}/arms", data={"csrf_token": csrf(form.text), "subject_id": "FR01-202"}
        )
        assert other.status_code == 404
        assert not BLIND_LEAKS.search(other.text)
        web.cookies.clear()
        login(web, person(Role.PHARMACIST), clock)
        assert web.get(f"{UI}/arms").status_code == 403
        assert "Arms after the lock" not in web.get("/ui/").text


class TestResupplySettings:
    def test_the_supply_manager_sees_levels_without_kit_types(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.SUPPLY_MANAGER), clock)
        page = web.get(f"{UI}/supply-settings")
        assert page.status_code == 200, page.text
        assert "Every kit type" in page.text
        assert re.search(r'id="do-not-dispense-days">30<', page.text)
        assert "<td>16</td><td>8</td><td>16</td>" in page.text
        assert not BLIND_LEAKS.search(page.text)
        assert not KIT_TYPES.search(page.text)
        assert "Resupply settings" in web.get("/ui/").text
        assert 'action="/ui/studies/iris-7a/supply-settings"' not in page.text  # read only

    def test_other_roles_are_refused(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.PHARMACIST), clock)
        assert web.get(f"{UI}/supply-settings").status_code == 403

    def test_different_levels_are_numbered_by_value_not_by_type(self, trial: Container) -> None:
        study = get_study(trial.uow(TEST_ACTOR), STUDY, None).study
        levels = {
            "KT_PBO": SupplyLevels(initial=20, trigger=10, resupply=20),
            "KT_IL7": SupplyLevels(initial=12, trigger=6, resupply=12),
        }
        supply = dataclasses.replace(study.supply, levels=levels)
        changed = dataclasses.replace(study, supply=supply)
        view = SupplySettingsView.of(changed)
        assert not view.same_for_every_type
        assert [(r.number, r.initial) for r in view.levels] == [(1, 12), (2, 20)]
        assert not KIT_TYPES.search(repr(view))


def test_the_new_pages_speak_french(
    web: TestClient, trial: Container, person: Callable[..., Person], clock: FakeClock
) -> None:
    login(web, person(Role.SUPPLY_MANAGER, locale="fr"), clock)
    page = web.get(f"{UI}/supply-settings")
    assert "Paramètres de réapprovisionnement" in page.text
    assert "Chaque type de kit" in page.text
    assert "Resupply settings" not in page.text


class TestKitsExpectedBack:
    def test_the_inventory_page_lists_a_discontinued_subjects_kits(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-201")
        randomize(web, "FR01-201", "72")
        edc = Principal("web-tests", Role.EDC, frozenset({STUDY}), {STUDY: None})
        with trial.uow(TEST_ACTOR) as uow:
            record = uow.subjects.get(STUDY, "FR01-201")
            assert record is not None
            kits = sorted(k.kit_number for d in uow.supply.dispensations(record) for k in d.kits)
        assert kits
        web.post("/ui/logout", data={"csrf_token": csrf(web.get("/ui/").text)})
        login(web, person(Role.PHARMACIST), clock)
        before = web.get(f"{UI}/inventory", params={"site": "FR01"})
        assert 'id="expected-back-none"' in before.text

        subjects_service.discontinue(trial.uow(TEST_ACTOR), edc, STUDY, "FR01-201", "death")

        after = web.get(f"{UI}/inventory", params={"site": "FR01"})
        table = re.search(r'<table id="expected-back">(.*?)</table>', after.text, re.DOTALL)
        assert table is not None
        assert re.findall(r"<td>(\d{8})</td>", table.group(1)) == kits
        assert "FR01-201" in table.group(1)
        assert not BLIND_LEAKS.search(after.text)
        assert not KIT_TYPES.search(table.group(1))
