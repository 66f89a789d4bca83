"""Ending a subject over the API: discontinuation (with one of the study's reasons) and
completion, once and only after randomization; no dispensing after; audited blind; scoped
to the caller's sites; idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.bootstrap import Container
from app.domain.subjects import SubjectStatus
from tests.api.conftest import Login
from tests.api.test_supply import (
    API,
    KIT_TYPES,
    assert_blind,
    audit_text,
    dispense_url,
    generate,
    held,
    lose,
    randomized,
    receive,
    registered,
    stock,
)
from tests.conftest import TEST_ACTOR


@pytest.fixture
def kitted(loaded: Container) -> Container:
    """Both studies loaded, iris-7a's kits generated, FR01's initial shipment received."""
    generate(loaded)
    receive(loaded, "FR01")
    return loaded


def discontinue(
    client: TestClient, subject_id: str, body: dict[str, Any], headers: dict[str, str]
) -> Any:
    return client.post(f"{API}/subjects/{subject_id}/discontinuation", json=body, headers=headers)


def complete(client: TestClient, subject_id: str, headers: dict[str, str], body: Any = None) -> Any:
    url = f"{API}/subjects/{subject_id}/completion"
    if body is None:
        return client.post(url, headers=headers)
    return client.post(url, json=body, headers=headers)


def problem(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


class TestDiscontinue:
    def test_with_a_reason_answers_the_blinded_subject(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("investigator", sites=["FR01"])

        response = discontinue(client, "S-001", {"reason": "adverse_event"}, headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "discontinued"
        assert body["ended_at"] is not None
        shown = client.get(f"{API}/subjects/S-001", headers=headers).json()
        assert shown == body
        assert [d["visit"] for d in body["dispensations"]] == ["D1"]
        assert_blind(body)

    def test_other_needs_a_detail(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("edc")

        bare = discontinue(client, "S-001", {"reason": "other"}, headers)
        blank = discontinue(client, "S-001", {"reason": "other", "detail": "  "}, headers)
        told = discontinue(client, "S-001", {"reason": "other", "detail": "moved"}, headers)

        assert problem(bare) == problem(blank) == (422, "invalid_discontinuation_reason")
        assert (told.status_code, told.json()["status"]) == (200, "discontinued")

    def test_an_unknown_reason_is_refused(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")

        response = discontinue(client, "S-001", {"reason": "bored"}, login("edc"))

        assert problem(response) == (422, "invalid_discontinuation_reason")
        with kitted.uow(TEST_ACTOR) as uow:
            subject = uow.subjects.get("iris-7a", "S-001")
        assert subject is not None
        assert subject.status is SubjectStatus.RANDOMIZED

    def test_the_study_names_its_reasons(self, client: TestClient, login: Login) -> None:
        study = client.get(API, headers=login("edc")).json()

        assert "lost_to_follow_up" in study["discontinuation_reasons"]


class TestComplete:
    @pytest.mark.parametrize("body", [None, {}, {"detail": "last visit done"}])
    def test_with_or_without_a_detail(
        self, body: Any, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")

        response = complete(client, "S-001", login("edc"), body)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"
        assert response.json()["ended_at"] is not None


class TestRefusals:
    def test_a_subject_not_randomized_cannot_end(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-REG")
        headers = login("edc")

        stopped = discontinue(client, "S-REG", {"reason": "death"}, headers)
        done = complete(client, "S-REG", headers)

        assert problem(stopped) == problem(done) == (409, "subject_not_randomized")

    def test_a_subject_ends_once(self, client: TestClient, kitted: Container, login: Login) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-002")
        headers = login("edc")
        assert discontinue(client, "S-001", {"reason": "death"}, headers).status_code == 200
        assert complete(client, "S-002", headers).status_code == 200

        again = [
            discontinue(client, "S-001", {"reason": "death"}, headers),
            complete(client, "S-001", headers),
            discontinue(client, "S-002", {"reason": "death"}, headers),
            complete(client, "S-002", headers),
        ]

        assert {problem(r) for r in again} == {(409, "subject_already_ended")}
        assert audit_text(kitted).count('"subject.discontinued"') == 1

    def test_another_sites_subject_is_not_found(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        elsewhere = login("investigator", sites=["FR02"])

        stopped = discontinue(client, "S-001", {"reason": "death"}, elsewhere)
        done = complete(client, "S-001", elsewhere)
        unknown = complete(client, "S-404", login("edc"))

        assert problem(stopped) == problem(done) == (404, "subject_not_found")
        assert problem(unknown) == (404, "subject_not_found")
        mine = client.get(f"{API}/subjects/S-001", headers=login("edc")).json()
        assert mine["status"] == "randomized"

    def test_a_pharmacist_may_not(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")

        response = complete(client, "S-001", login("pharmacist", sites=["FR01"]))

        assert response.status_code == 403

    def test_request_fields_are_checked(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("edc")
        for body in ({}, {"reason": "death", "arm": "PLACEBO"}, {"reason": 3}):
            response = discontinue(client, "S-001", body, headers)
            assert problem(response) == (422, "validation_error")


class TestNoDispensingAfterTheEnd:
    @pytest.mark.parametrize("end", ["discontinued", "completed"])
    def test_dispensing_and_replacement_are_refused_before_any_supply_check(
        self, end: str, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", days_ago=3)
        headers = login("pharmacist", sites=["FR01"])
        edc = login("edc")
        if end == "discontinued":
            assert discontinue(client, "S-001", {"reason": "death"}, edc).status_code == 200
        else:
            assert complete(client, "S-001", edc).status_code == 200
        (kit,) = held(kitted, "S-001")[:1]
        for kit_type in KIT_TYPES:  # nothing left at the site: still not a supply refusal
            lose(kitted, kit_type, keep=0)
        assert not stock(kitted)

        dispensed = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 55}, headers=headers
        )
        replaced = client.post(
            f"{dispense_url('S-001')}/D1/replacements",
            json={"kit_number": kit, "reason": "damaged"},
            headers=headers,
        )

        assert problem(dispensed) == problem(replaced) == (409, "subject_not_on_treatment")
        assert kit in held(kitted, "S-001")  # not replaced
        assert audit_text(kitted).count('"dispensation.created"') == 1

    def test_ended_subjects_are_no_longer_demand_for_resupply(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-002")

        complete(client, "S-001", login("edc"))

        with kitted.uow(TEST_ACTOR) as uow:
            on_treatment = uow.resupply.on_treatment("iris-7a", "FR01")
        assert [s.subject.subject_id for s in on_treatment] == ["S-002"]


class TestKitsExpectedBack:
    def test_the_last_visits_kits_of_a_discontinued_subject(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        for subject_id in ("S-001", "S-002", "S-003"):
            randomized(kitted, subject_id, days_ago=3)
        pharmacy = login("pharmacist", sites=["FR01"])
        for subject_id in ("S-001", "S-002"):
            given = client.post(
                dispense_url(subject_id), json={"visit": "D4", "weight_kg": 70}, headers=pharmacy
            )
            assert given.status_code == 201, given.text
        edc = login("edc")
        url = f"{API}/sites/FR01/kits-expected-back"
        assert client.get(url, headers=pharmacy).json() == {"site_id": "FR01", "kits": []}

        assert discontinue(client, "S-001", {"reason": "death"}, edc).status_code == 200
        assert complete(client, "S-002", edc).status_code == 200

        owed = client.get(url, headers=pharmacy)
        assert owed.status_code == 200, owed.text
        kits = owed.json()["kits"]
        assert [k["kit_number"] for k in kits] == sorted(held(kitted, "S-001", "D4"))
        assert {(k["subject_id"], k["visit"]) for k in kits} == {("S-001", "D4")}
        assert_blind(owed.json())
        supply_manager = client.get(url, headers=login("supply_manager"))
        assert supply_manager.json() == owed.json()

    def test_scoped_to_the_callers_sites(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        url = f"{API}/sites/FR01/kits-expected-back"
        assert problem(client.get(url, headers=login("pharmacist", sites=["FR02"]))) == (
            404,
            "site_not_found",
        )
        assert client.get(url, headers=login("edc")).status_code == 403


class TestAuditAndRetry:
    def test_each_end_is_audited_with_its_reason_and_blind(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-002")
        headers = login("edc")
        discontinue(client, "S-001", {"reason": "other", "detail": "moved abroad"}, headers)
        complete(client, "S-002", headers, {"detail": "all visits"})

        audit = client.get(f"{API}/audit", headers=login("auditor")).json()
        events = {e["action"]: e for e in audit["events"]}

        stopped = events["subject.discontinued"]
        assert (stopped["subject_id"], stopped["reason"]) == ("S-001", "other: moved abroad")
        assert stopped["before"] == {"status": "randomized"}
        assert stopped["after"]["reason"] == "other"
        assert stopped["after"]["detail"] == "moved abroad"
        assert stopped["after"]["status"] == "discontinued"
        done = events["subject.completed"]
        assert (done["subject_id"], done["reason"]) == ("S-002", "all visits")
        assert done["after"]["status"] == "completed"
        assert_blind(audit)
        assert_blind(audit_text(kitted))

    def test_the_same_key_replays_the_first_answer(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = {**login("edc"), "Idempotency-Key": "end-S-001"}
        body = {"reason": "consent_withdrawn"}

        first = discontinue(client, "S-001", body, headers)
        second = discontinue(client, "S-001", body, headers)
        other = discontinue(client, "S-001", {"reason": "death"}, headers)

        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert problem(other) == (422, "idempotency_key_reused")
        assert audit_text(kitted).count('"subject.discontinued"') == 1
