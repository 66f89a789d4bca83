"""A subject's record over the API: screen failure (once, only before randomization, never
randomized after), re-screening as a new registration linked to the earlier one, stratum
correction after randomization (the allocation stays as randomized; the statistician's
exports show both strata) and the eligibility attestation the randomization asks for.
Scoped to the caller's sites, idempotent, audited blind; a refusal changes nothing."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import Container
from app.domain.subjects import SubjectStatus
from app.services.randomization import generate_list
from app.services.studies import load_study
from tests.api.conftest import Login
from tests.api.test_subject_end import discontinue, problem
from tests.api.test_supply import (
    API,
    STRATA,
    STUDY,
    assert_blind,
    audit_text,
    generate,
    randomized,
    receive,
    registered,
)
from tests.builders import set_path, study_document
from tests.conftest import TEST_ACTOR

QUESTIONS = [
    {"code": "consent", "text": "Consent signed?", "text_fr": "Consentement signé ?"},
    {"code": "sepsis", "text": "Sepsis confirmed?"},
]
YES = {"consent": True, "sepsis": True}


@pytest.fixture
def kitted(loaded: Container) -> Container:
    """Both studies loaded, iris-7a's list and kits generated, FR01's initial shipment
    received."""
    generate(loaded)
    receive(loaded, "FR01")
    generate_list(loaded.uow(TEST_ACTOR), "test", STUDY)
    return loaded


def reload(container: Container, doc: dict[str, Any]) -> None:
    parsed = parse_document(doc, "test")
    document, _raw, sha = canonical(parsed)
    load_study(container.uow(TEST_ACTOR), to_domain(parsed), document, sha)


def screen_fail(client: TestClient, subject_id: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(f"{API}/subjects/{subject_id}/screen-failure", json=body, headers=headers)


def correct(client: TestClient, subject_id: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(
        f"{API}/subjects/{subject_id}/stratum-correction", json=body, headers=headers
    )


def register(client: TestClient, headers: dict[str, str], subject_id: str, **extra: Any) -> Any:
    body = {"subject_id": subject_id, "site_id": "FR01", "strata": STRATA, **extra}
    return client.post(f"{API}/subjects", json=body, headers=headers)


def randomize(client: TestClient, subject_id: str, headers: dict[str, str], body: Any) -> Any:
    return client.post(f"{API}/subjects/{subject_id}/randomization", json=body, headers=headers)


def status_of(container: Container, subject_id: str) -> SubjectStatus | None:
    with container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, subject_id)
    return None if subject is None else subject.status


def cursors(container: Container) -> dict[str, int]:
    with container.uow(TEST_ACTOR) as uow:
        info = uow.lists.active(STUDY, "live")
        assert info is not None
        return {s.key: s.next_sequence for s in uow.lists.strata(info)}


class TestScreenFailure:
    def test_a_registered_subject_fails_screening_once(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        headers = login("investigator", sites=["FR01"])

        failed = screen_fail(client, "S-001", {"reason": "exclusion_criterion_met"}, headers)
        again = screen_fail(client, "S-001", {"reason": "death"}, headers)
        stopped = discontinue(client, "S-001", {"reason": "death"}, headers)

        assert failed.status_code == 200, failed.text
        body = failed.json()
        assert (body["status"], body["end_reason"]) == ("screen_failed", "exclusion_criterion_met")
        assert body["ended_at"] is not None
        assert client.get(f"{API}/subjects/S-001", headers=headers).json() == body
        assert problem(again) == problem(stopped) == (409, "subject_already_ended")
        assert audit_text(kitted).count('"subject.screen_failed"') == 1

    def test_a_screen_failed_subject_is_never_randomized(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        headers = login("edc")
        assert screen_fail(client, "S-001", {"reason": "death"}, headers).status_code == 200

        response = randomize(client, "S-001", headers, {"weight_kg": 70})

        assert problem(response) == (409, "subject_screen_failed")
        assert status_of(kitted, "S-001") is SubjectStatus.SCREEN_FAILED
        assert '"subject.randomized"' not in audit_text(kitted)

    def test_a_randomized_subject_cannot_fail_screening(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")

        response = screen_fail(client, "S-001", {"reason": "death"}, login("edc"))

        assert problem(response) == (409, "subject_already_randomized")
        assert status_of(kitted, "S-001") is SubjectStatus.RANDOMIZED

    def test_the_reason_is_one_of_the_studys(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        headers = login("edc")

        unknown = screen_fail(client, "S-001", {"reason": "bored"}, headers)
        bare = screen_fail(client, "S-001", {"reason": "other", "detail": " "}, headers)
        extra = screen_fail(client, "S-001", {"reason": "death", "arm": "x"}, headers)
        told = screen_fail(client, "S-001", {"reason": "other", "detail": "moved"}, headers)

        assert problem(unknown) == problem(bare) == (422, "invalid_screen_failure_reason")
        assert problem(extra) == (422, "validation_error")
        assert told.status_code == 200
        study = client.get(API, headers=headers).json()
        assert "inclusion_criterion_not_met" in study["screen_failure_reasons"]
        assert (study["rescreening"], study["max_rescreens"]) == (True, 1)

    def test_scope_and_role(self, client: TestClient, kitted: Container, login: Login) -> None:
        registered(kitted, "S-001")

        elsewhere = screen_fail(
            client, "S-001", {"reason": "death"}, login("investigator", sites=["FR02"])
        )
        pharmacist = screen_fail(
            client, "S-001", {"reason": "death"}, login("pharmacist", sites=["FR01"])
        )

        assert problem(elsewhere) == (404, "subject_not_found")
        assert pharmacist.status_code == 403
        assert status_of(kitted, "S-001") is SubjectStatus.REGISTERED

    def test_audited_blind_and_idempotent(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        headers = {**login("edc"), "Idempotency-Key": "sf-S-001"}
        body = {"reason": "other", "detail": "withdrew before dosing"}

        first = screen_fail(client, "S-001", body, headers)
        second = screen_fail(client, "S-001", body, headers)
        other = screen_fail(client, "S-001", {"reason": "death"}, headers)

        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert problem(other) == (422, "idempotency_key_reused")
        audit = client.get(f"{API}/audit", headers=login("auditor")).json()
        (event,) = [e for e in audit["events"] if e["action"] == "subject.screen_failed"]
        assert event["reason"] == "other: withdrew before dosing"
        assert event["before"] == {"status": "registered"}
        assert event["after"]["status"] == "screen_failed"
        assert_blind(audit)


class TestRescreening:
    def test_a_new_registration_names_the_earlier_one(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        headers = login("investigator", sites=["FR01"])
        registered(kitted, "S-001")
        screen_fail(client, "S-001", {"reason": "inclusion_criterion_not_met"}, headers)

        again = register(client, headers, "S-001-R", rescreen_of="S-001")

        assert again.status_code == 201, again.text
        assert again.json()["rescreen_of"] == "S-001"
        assert again.json()["status"] == "registered"
        later = client.get(f"{API}/subjects/S-001-R", headers=headers).json()
        earlier = client.get(f"{API}/subjects/S-001", headers=headers).json()
        assert later["rescreen_of"] == "S-001"
        assert earlier["rescreened_as"] == "S-001-R"
        assert earlier["status"] == "screen_failed"
        assert randomize(client, "S-001-R", headers, {}).status_code == 201
        assert '"rescreen_of": "S-001"' in audit_text(kitted)

    def test_only_a_screen_failed_subject_of_that_site_and_once(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        edc = login("edc")
        registered(kitted, "S-REG")
        registered(kitted, "S-001")
        registered(kitted, "S-FR02", site="FR02")
        for subject_id in ("S-001", "S-FR02"):
            assert screen_fail(client, subject_id, {"reason": "death"}, edc).status_code == 200
        assert register(client, edc, "S-001-R", rescreen_of="S-001").status_code == 201

        refused = {
            "registered": register(client, edc, "N-1", rescreen_of="S-REG"),
            "unknown": register(client, edc, "N-2", rescreen_of="S-404"),
            "other site": register(client, edc, "N-3", rescreen_of="S-FR02"),
            "not mine": register(
                client,
                login("investigator", sites=["FR01", "FR03"]),
                "N-4",
                rescreen_of="S-FR02",
            ),
            "twice": register(client, edc, "N-5", rescreen_of="S-001"),
        }
        assert screen_fail(client, "S-001-R", {"reason": "death"}, edc).status_code == 200
        refused["limit"] = register(client, edc, "N-6", rescreen_of="S-001-R")

        assert {k: problem(r) for k, r in refused.items()} == {
            "registered": (409, "rescreen_of_not_screen_failed"),
            "unknown": (422, "rescreen_of_not_found"),
            "other site": (422, "rescreen_of_not_found"),
            "not mine": (422, "rescreen_of_not_found"),
            "twice": (409, "subject_already_rescreened"),
            "limit": (409, "rescreen_limit_reached"),
        }
        assert all(status_of(kitted, f"N-{i}") is None for i in range(1, 7))

    def test_a_study_may_not_allow_it(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        reload(kitted, set_path(study_document(), "subjects.rescreening", False))
        edc = login("edc")
        registered(kitted, "S-001")
        screen_fail(client, "S-001", {"reason": "death"}, edc)

        response = register(client, edc, "S-001-R", rescreen_of="S-001")

        assert problem(response) == (409, "rescreening_not_allowed")
        assert status_of(kitted, "S-001-R") is None


class TestStratumCorrection:
    def test_after_randomization_the_allocation_stays_as_randomized(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        headers = login("investigator", sites=["FR01"])
        before = client.get(f"{API}/subjects/S-001", headers=headers).json()
        moved = cursors(kitted)

        response = correct(
            client, "S-001", {"factor": "shock", "level": "no", "reason": "typo"}, headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["strata"] == STRATA
        assert body["strata_corrected"] == {"shock": "no", "age": "lt65"}
        assert body["randomization_number"] == before["randomization_number"]
        assert body["status"] == "randomized"
        assert cursors(kitted) == moved
        audit = client.get(f"{API}/audit", headers=login("auditor")).json()
        (event,) = [e for e in audit["events"] if e["action"] == "subject.stratum_corrected"]
        assert event["reason"] == "typo"
        assert (event["before"]["level"], event["after"]["level"]) == ("yes", "no")
        assert event["after"]["strata_at_randomization"] == STRATA
        assert_blind(audit)

    def test_a_second_correction_builds_on_the_first(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        edc = login("edc")
        correct(client, "S-001", {"factor": "shock", "level": "no", "reason": "a"}, edc)

        same = correct(client, "S-001", {"factor": "shock", "level": "no", "reason": "b"}, edc)
        age = correct(client, "S-001", {"factor": "age", "level": "ge65", "reason": "c"}, edc)

        assert problem(same) == (422, "stratum_unchanged")
        assert age.json()["strata_corrected"] == {"shock": "no", "age": "ge65"}
        assert age.json()["strata"] == STRATA

    def test_unknown_factors_levels_and_blank_reasons_change_nothing(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        edc = login("edc")

        answers = [
            correct(client, "S-001", {"factor": "sex", "level": "f", "reason": "x"}, edc),
            correct(client, "S-001", {"factor": "shock", "level": "maybe", "reason": "x"}, edc),
            correct(client, "S-001", {"factor": "shock", "level": "yes", "reason": "x"}, edc),
            correct(client, "S-001", {"factor": "shock", "level": "no", "reason": "  "}, edc),
            correct(client, "S-001", {"factor": "shock", "level": "no"}, edc),
        ]

        assert [problem(r) for r in answers] == [
            (422, "invalid_stratum"),
            (422, "invalid_stratum"),
            (422, "stratum_unchanged"),
            (422, "invalid_correction"),
            (422, "validation_error"),
        ]
        shown = client.get(f"{API}/subjects/S-001", headers=edc).json()
        assert shown["strata_corrected"] is None
        assert '"subject.stratum_corrected"' not in audit_text(kitted)

    def test_before_randomization_the_registration_is_corrected(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        edc = login("edc")

        fixed = correct(client, "S-001", {"factor": "age", "level": "ge65", "reason": "x"}, edc)
        randomization = randomize(client, "S-001", edc, {})

        assert fixed.json()["strata"] == {"shock": "yes", "age": "ge65"}
        assert fixed.json()["strata_corrected"] is None
        assert randomization.json()["stratum"] == "FR01|shock=yes|age=ge65"

    def test_scope_role_state_and_retry(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        registered(kitted, "S-002")
        edc = login("edc")
        screen_fail(client, "S-002", {"reason": "death"}, edc)
        body = {"factor": "shock", "level": "no", "reason": "typo"}

        elsewhere = correct(client, "S-001", body, login("investigator", sites=["FR02"]))
        pharmacist = correct(client, "S-001", body, login("pharmacist", sites=["FR01"]))
        failed = correct(client, "S-002", body, edc)
        keyed = {**edc, "Idempotency-Key": "fix-S-001"}
        first, second = correct(client, "S-001", body, keyed), correct(client, "S-001", body, keyed)

        assert problem(elsewhere) == (404, "subject_not_found")
        assert pharmacist.status_code == 403
        assert problem(failed) == (409, "subject_screen_failed")
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert audit_text(kitted).count('"subject.stratum_corrected"') == 1


class TestExportsShowBothStrata:
    def test_list_and_pooled_exports(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        randomized(kitted, "S-002")
        fix = {"factor": "shock", "level": "no", "reason": "typo"}
        assert correct(client, "S-001", fix, login("edc")).status_code == 200
        statistician = login("unblinded_statistician", studies=["iris-7a", "iris-7b"])

        listed = client.get(f"{API}/randomization-list?format=csv", headers=statistician)
        as_json = client.get(f"{API}/randomization-list", headers=statistician).json()
        pooled = client.get(
            "/api/v1/pooled/allocations?studies=iris-7a,iris-7b", headers=statistician
        )

        rows = {r["subject_id"]: r for r in csv.DictReader(io.StringIO(listed.text))}
        assert rows["S-001"]["stratum"] == "FR01|shock=yes|age=lt65"
        assert rows["S-001"]["stratum_corrected"] == "FR01|shock=no|age=lt65"
        assert rows["S-002"]["stratum_corrected"] == ""
        slots = {s["subject_id"]: s for s in as_json["slots"] if s["subject_id"]}
        assert slots["S-001"]["stratum_corrected"] == "FR01|shock=no|age=lt65"
        assert slots["S-002"]["stratum_corrected"] is None
        pooled_rows = {r["subject"]: r for r in csv.DictReader(io.StringIO(pooled.text))}
        assert pooled_rows["S-001"]["stratum"] == "FR01|shock=yes|age=lt65"
        assert pooled_rows["S-001"]["stratum_corrected"] == "FR01|shock=no|age=lt65"
        assert pooled_rows["S-002"]["stratum_corrected"] == ""


class TestEligibility:
    @pytest.fixture
    def asking(self, kitted: Container) -> Container:
        """iris-7a asks two eligibility questions before each randomization."""
        reload(kitted, study_document(eligibility=QUESTIONS))
        return kitted

    def test_the_study_lists_its_questions(
        self, client: TestClient, asking: Container, login: Login
    ) -> None:
        study = client.get(API, headers=login("edc")).json()

        assert study["eligibility"] == [
            {"code": "consent", "text": "Consent signed?", "text_fr": "Consentement signé ?"},
            {"code": "sepsis", "text": "Sepsis confirmed?", "text_fr": None},
        ]

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"eligibility": {"consent": True}},
            {"eligibility": {"consent": True, "sepsis": False}},
            {"eligibility": {**YES, "pregnant": True}},
        ],
        ids=["none", "one missing", "one no", "unknown question"],
    )
    def test_refused_unless_every_question_is_yes(
        self, body: Any, client: TestClient, asking: Container, login: Login
    ) -> None:
        registered(asking, "S-001")
        moved = cursors(asking)

        response = randomize(client, "S-001", login("investigator", sites=["FR01"]), body)

        assert problem(response) == (422, "eligibility_not_confirmed")
        assert status_of(asking, "S-001") is SubjectStatus.REGISTERED
        assert cursors(asking) == moved
        assert '"subject.randomized"' not in audit_text(asking)

    def test_answers_must_be_booleans(
        self, client: TestClient, asking: Container, login: Login
    ) -> None:
        registered(asking, "S-001")

        edc = login("edc")

        loose = randomize(client, "S-001", edc, {"eligibility": {"consent": "yes", "sepsis": 1}})
        strict = randomize(client, "S-001", edc, {"eligibility": YES})

        assert problem(loose) == (422, "validation_error")
        assert strict.status_code == 201, strict.text

    def test_the_answers_are_kept_with_the_subject_and_audited(
        self, client: TestClient, asking: Container, login: Login
    ) -> None:
        registered(asking, "S-001")
        headers = login("edc")

        response = randomize(client, "S-001", headers, {"weight_kg": 70, "eligibility": YES})

        assert response.status_code == 201, response.text
        assert_blind(response.json())
        shown = client.get(f"{API}/subjects/S-001", headers=headers).json()
        assert shown["eligibility"] == YES
        audit = client.get(f"{API}/audit", headers=login("auditor")).json()
        (event,) = [e for e in audit["events"] if e["action"] == "subject.randomized"]
        assert event["after"]["eligibility"] == YES

    def test_a_study_without_questions_asks_none(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-001")
        registered(kitted, "S-002")
        edc = login("edc")

        bare = randomize(client, "S-001", edc, {})
        unknown = randomize(client, "S-002", edc, {"eligibility": {"consent": True}})

        assert bare.status_code == 201
        assert client.get(f"{API}/subjects/S-001", headers=edc).json()["eligibility"] is None
        assert problem(unknown) == (422, "eligibility_not_confirmed")
