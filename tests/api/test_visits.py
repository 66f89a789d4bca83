"""Missed, held and unscheduled doses over the API, visit windows on the site's local dates,
the subject's schedule and the site's due view (issue 18, item 2): refusals say why with a
stable code and change nothing, everything is audited blind, scoped and idempotent."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.adapters.db.models import DispensationRow, OutboxRow, VisitEventRow
from app.bootstrap import Container
from app.services import subjects as subjects_service
from tests.api.conftest import Login
from tests.api.test_subject_records import reload
from tests.api.test_supply import (
    API,
    EDC,
    KIT_TYPES,
    assert_blind,
    audit_text,
    dispense_url,
    generate,
    held,
    kit_type,
    lose,
    randomized,
    receive,
    registered,
    types_of,
)
from tests.builders import study_document
from tests.conftest import TEST_ACTOR


class FixedClock:
    """The use cases' clock, set by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


TODAY = datetime.now(UTC).date()
NOON = datetime.combine(TODAY, time(12), UTC)  # the same date in UTC and in Paris


@pytest.fixture
def kitted(loaded: Container) -> Container:
    generate(loaded)
    receive(loaded, "FR01")
    return loaded


@pytest.fixture
def clock(kitted: Container) -> FixedClock:
    """Noon UTC today; FR01 keeps Paris time."""
    fixed = FixedClock(NOON)
    kitted.clock = fixed  # type: ignore[assignment]
    return fixed


def at_day(clock: FixedClock, day: int) -> None:
    clock.at = NOON + timedelta(days=day)


def missed(client: TestClient, subject_id: str, visit: str, headers: dict[str, str]) -> Any:
    url = f"{API}/subjects/{subject_id}/visits/{visit}/missed"
    return client.post(url, json={"reason": "in theatre all day"}, headers=headers)


def held_dose(client: TestClient, subject_id: str, visit: str, headers: dict[str, str]) -> Any:
    url = f"{API}/subjects/{subject_id}/visits/{visit}/held"
    return client.post(url, json={"reason": "platelets too low"}, headers=headers)


def dispense(client: TestClient, subject_id: str, visit: str, headers: dict[str, str]) -> Any:
    body = {"visit": visit, "weight_kg": 70}
    return client.post(dispense_url(subject_id), json=body, headers=headers)


def unscheduled(client: TestClient, subject_id: str, headers: dict[str, str], **body: Any) -> Any:
    url = f"{API}/subjects/{subject_id}/unscheduled-dispensations"
    return client.post(
        url, json={"reason": "vial broken", "weight_kg": 70, **body}, headers=headers
    )


def problem(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def visit_events(container: Container) -> int:
    with container.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(VisitEventRow)) or 0)


def statuses(client: TestClient, subject_id: str, headers: dict[str, str]) -> dict[str, str]:
    body = client.get(f"{API}/subjects/{subject_id}", headers=headers).json()
    return {v["visit"]: v["status"] for v in body["visits"]}


class TestMissedAndHeld:
    def test_a_missed_visit_no_longer_blocks_the_next_one(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("investigator", sites=["FR01"])
        at_day(clock, 7)  # D4's window (days 2 to 4) closed with nothing recorded

        response = dispense(client, "S-001", "D8", headers)

        assert response.status_code == 201, response.text
        assert statuses(client, "S-001", headers)["D4"] == "closed"

    def test_a_recorded_visit_is_no_longer_demand_for_resupply(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-002")
        headers = login("investigator", sites=["FR01"])
        at_day(clock, 3)

        assert missed(client, "S-001", "D4", headers).status_code == 201
        held_at = client.post(
            f"{API}/subjects/S-002/visits/D4/held", json={"reason": "unstable"}, headers=headers
        )
        assert held_at.status_code == 201, held_at.text

        with kitted.uow(TEST_ACTOR) as uow:
            settled = {
                s.subject.subject_id: s.dispensed
                for s in uow.resupply.on_treatment("iris-7a", "FR01")
            }
        assert settled == {"S-001": {"D1", "D4"}, "S-002": {"D1", "D4"}}

    def test_recorded_missed_with_its_reason_then_the_next_in_its_window(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("investigator", sites=["FR01"])
        at_day(clock, 3)

        response = missed(client, "S-001", "D4", headers)

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"subject_id", "visit", "status", "reason", "recorded_at"}
        assert (body["subject_id"], body["visit"], body["status"]) == ("S-001", "D4", "missed")
        assert body["reason"] == "in theatre all day"
        assert problem(dispense(client, "S-001", "D4", headers)) == (409, "visit_already_recorded")
        at_day(clock, 7)
        assert dispense(client, "S-001", "D8", headers).status_code == 201
        shown = statuses(client, "S-001", headers)
        assert [shown[v] for v in ("D1", "D4", "D8", "D11")] == [
            "dispensed",
            "missed",
            "dispensed",
            "upcoming",
        ]
        text = audit_text(kitted)
        assert '"visit.missed"' in text
        assert "in theatre all day" in text
        assert_blind(text)

    def test_held_lets_the_next_visit_go_while_its_own_window_is_open(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("pharmacist", sites=["FR01"])
        at_day(clock, 3)

        response = held_dose(client, "S-001", "D4", headers)

        assert response.status_code == 201, response.text
        assert response.json()["status"] == "held"
        assert statuses(client, "S-001", headers)["D4"] == "held"
        assert '"visit.held"' in audit_text(kitted)

    def test_refusals_change_nothing(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-END")
        subjects_service.discontinue(kitted.uow(TEST_ACTOR), EDC, "iris-7a", "S-END", "death")
        registered(kitted, "S-REG")
        headers = login("edc")
        at_day(clock, 1)
        before = visit_events(kitted)

        assert problem(missed(client, "S-001", "D4", headers)) == (409, "visit_not_allowed")
        assert problem(missed(client, "S-001", "D99", headers)) == (409, "visit_not_allowed")
        assert problem(missed(client, "S-001", "D1", headers)) == (409, "visit_already_dispensed")
        assert problem(missed(client, "S-END", "D1", headers)) == (409, "subject_not_on_treatment")
        assert problem(missed(client, "S-REG", "D1", headers)) == (409, "subject_not_randomized")
        assert problem(missed(client, "S-404", "D1", headers)) == (404, "subject_not_found")
        for body in ({}, {"reason": "   "}, {"reason": "x", "arm": "PLACEBO"}):
            response = client.post(
                f"{API}/subjects/S-001/visits/D4/held", json=body, headers=headers
            )
            assert problem(response) == (422, "validation_error")
        elsewhere = missed(client, "S-001", "D4", login("investigator", sites=["FR02"]))
        assert problem(elsewhere) == (404, "subject_not_found")
        assert visit_events(kitted) == before

    def test_recorded_once(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("edc")
        at_day(clock, 3)
        assert missed(client, "S-001", "D4", headers).status_code == 201

        again = held_dose(client, "S-001", "D4", headers)

        assert problem(again) == (409, "visit_already_recorded")
        assert visit_events(kitted) == 1

    def test_idempotent_retry(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = {**login("edc"), "Idempotency-Key": "missed-S-001-D4"}
        at_day(clock, 3)
        url = f"{API}/subjects/S-001/visits/D4/missed"

        first = client.post(url, json={"reason": "ill"}, headers=headers)
        second = client.post(url, json={"reason": "ill"}, headers=headers)
        other = client.post(url, json={"reason": "away"}, headers=headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert problem(other) == (422, "idempotency_key_reused")
        assert visit_events(kitted) == 1


class TestSiteLocalWindows:
    """FR01 keeps Paris time. Randomized at 23:30 UTC, the subject's day 0 is the next date
    in Paris: D4 (day 3, one day either side) is open on Paris days 2 to 4."""

    @pytest.fixture
    def late(self, clock: FixedClock, kitted: Container) -> date:
        clock.at = datetime.combine(TODAY, time(23, 30), UTC)
        randomized(kitted, "S-001")
        return TODAY + timedelta(days=1)  # day 0 in Paris

    @pytest.mark.parametrize(("day", "allowed"), [(1, False), (2, True), (4, True), (5, False)])
    def test_windows_count_from_the_local_date_of_randomization(
        self,
        client: TestClient,
        clock: FixedClock,
        late: date,
        login: Login,
        day: int,
        allowed: bool,
    ) -> None:
        # At noon UTC the date is the same in Paris; in UTC dates the window would be one
        # day earlier (days 1 to 3 of the Paris calendar).
        clock.at = datetime.combine(late + timedelta(days=day), time(12), UTC)

        response = dispense(client, "S-001", "D4", login("edc"))

        assert (response.status_code == 201) is allowed, response.text

    def test_today_is_the_local_date(
        self, client: TestClient, clock: FixedClock, late: date, login: Login
    ) -> None:
        # 23:30 UTC on Paris day 3 is already Paris day 4 (D4's last day), and 23:30 UTC on
        # day 4 is day 5, closed.
        clock.at = datetime.combine(late + timedelta(days=3), time(23, 30), UTC)
        headers = login("edc")
        shown = client.get(f"{API}/subjects/S-001", headers=headers).json()
        d4 = next(v for v in shown["visits"] if v["visit"] == "D4")
        assert (d4["opens_date"], d4["closes_date"], d4["status"]) == (
            (late + timedelta(days=2)).isoformat(),
            (late + timedelta(days=4)).isoformat(),
            "due",
        )
        clock.at += timedelta(days=1)
        assert problem(dispense(client, "S-001", "D4", headers)) == (409, "visit_not_allowed")


class TestUnscheduled:
    def test_the_kit_type_of_the_last_visit_dispensed_in_the_weight_bands_quantity(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        _, arm = randomized(kitted, "S-001")
        headers = login("pharmacist", sites=["FR01"])

        first = unscheduled(client, "S-001", headers)

        assert first.status_code == 201, first.text
        body = first.json()
        assert set(body) == {"subject_id", "visit", "kits", "dispensed_at"}
        assert (body["subject_id"], body["visit"]) == ("S-001", "U1")
        numbers = [k["kit_number"] for k in body["kits"]]
        assert types_of(kitted, numbers) == [kit_type(kitted, arm, "D1")] * 2
        assert_blind(body)
        at_day(clock, 3)
        assert dispense(client, "S-001", "D4", headers).status_code == 201
        second = unscheduled(client, "S-001", headers, weight_kg=50)
        assert second.json()["visit"] == "U2"
        assert types_of(kitted, held(kitted, "S-001", "U2")) == [kit_type(kitted, arm, "D4")]
        # The example studies allow two a subject.
        assert problem(unscheduled(client, "S-001", headers)) == (409, "unscheduled_not_allowed")
        shown = client.get(f"{API}/subjects/S-001", headers=headers).json()
        assert [d["visit"] for d in shown["dispensations"]] == ["D1", "U1", "D4", "U2"]
        assert "U1" not in {v["visit"] for v in shown["visits"]}
        text = audit_text(kitted)
        assert text.count('"unscheduled": true') == 2
        assert "vial broken" in text
        assert_blind(text)

    def test_refused_alike_when_another_arms_type_is_short(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        _, arm = randomized(kitted, "S-001")
        own = kit_type(kitted, arm, "D1")
        (other,) = set(KIT_TYPES) - {own}
        lose(kitted, other, keep=1)

        response = unscheduled(client, "S-001", login("edc"))

        assert problem(response) == (409, "insufficient_supply")
        assert_blind(response.json())
        with kitted.session_factory() as session:
            notes = session.execute(select(OutboxRow.kind, OutboxRow.payload)).all()
            visits = session.execute(select(DispensationRow.visit)).scalars().all()
        assert ("supply.visit_refused", {"site": "FR01", "subject_id": "S-001", "visit": "U1"}) in [
            tuple(n) for n in notes
        ]
        assert visits == ["D1"]

    def test_the_study_says_its_rule(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        headers = login("edc")
        study = client.get(API, headers=headers)
        assert study.json()["unscheduled"] == {"kit_rule": "last_visit", "max_per_subject": 2}
        doc = study_document()
        del doc["unscheduled"]
        reload(loaded, doc)
        assert client.get(API, headers=headers).json()["unscheduled"] is None

    def test_refusals(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-NONE", weight=None)  # no visit dispensed yet
        randomized(kitted, "S-END")
        subjects_service.discontinue(kitted.uow(TEST_ACTOR), EDC, "iris-7a", "S-END", "death")
        headers = login("edc")

        assert problem(unscheduled(client, "S-NONE", headers)) == (409, "unscheduled_not_allowed")
        assert problem(unscheduled(client, "S-END", headers)) == (409, "subject_not_on_treatment")
        assert problem(unscheduled(client, "S-001", headers, weight_kg=900)) == (
            422,
            "weight_out_of_range",
        )
        assert problem(unscheduled(client, "S-001", headers, reason="")) == (
            422,
            "validation_error",
        )
        assert problem(unscheduled(client, "S-001", headers, visit="D4")) == (
            422,
            "validation_error",
        )
        with kitted.session_factory() as session:
            visits = session.execute(select(DispensationRow.visit)).scalars().all()
        assert Counter(visits) == {"D1": 2}

    def test_idempotent_retry(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = {**login("edc"), "Idempotency-Key": "unscheduled-S-001-1"}

        first = unscheduled(client, "S-001", headers)
        second = unscheduled(client, "S-001", headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert len(held(kitted, "S-001", "U2")) == 0


class TestDueView:
    def url(self, site: str = "FR01", on: str | None = None) -> str:
        return f"{API}/sites/{site}/due" + (f"?on={on}" if on else "")

    def test_subjects_on_treatment_with_their_next_visit(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-END")
        subjects_service.discontinue(kitted.uow(TEST_ACTOR), EDC, "iris-7a", "S-END", "death")
        registered(kitted, "S-REG")
        at_day(clock, 6)
        headers = login("pharmacist", sites=["FR01"])

        response = client.get(self.url(), headers=headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["site_id"], body["timezone"]) == ("FR01", "Europe/Paris")
        assert body["on"] == (TODAY + timedelta(days=6)).isoformat()
        (entry,) = body["subjects"]
        assert entry["subject_id"] == "S-001"
        assert entry["visit"]["visit"] == "D8"
        assert entry["visit"]["status"] == "due"
        assert (entry["overdue"], entry["overdue_visits"]) == (True, ["D4"])
        assert_blind(body)

        earlier = client.get(self.url(on=(TODAY + timedelta(days=3)).isoformat()), headers=headers)
        (entry,) = earlier.json()["subjects"]
        assert (entry["visit"]["visit"], entry["visit"]["status"], entry["overdue"]) == (
            "D4",
            "due",
            False,
        )

    def test_today_is_the_sites_local_date(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        clock.at = datetime.combine(TODAY, time(23, 30), UTC)
        body = client.get(self.url(), headers=login("edc")).json()
        assert body["on"] == (TODAY + timedelta(days=1)).isoformat()

    def test_scope_and_bad_input(
        self, client: TestClient, clock: FixedClock, kitted: Container, login: Login
    ) -> None:
        other_site = client.get(self.url(), headers=login("investigator", sites=["FR02"]))
        unknown = client.get(self.url("FR99"), headers=login("edc"))
        bad_date = client.get(self.url(on="2026-13-40"), headers=login("edc"))
        auditor = client.get(self.url(), headers=login("auditor"))

        assert problem(other_site) == (404, "site_not_found")
        assert problem(unknown) == (404, "site_not_found")
        assert problem(bad_date) == (422, "validation_error")
        assert auditor.status_code == 403
