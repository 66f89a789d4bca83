"""The investigator's subject page changes the record through the API's use cases: screen
failure and re-screening, discontinuation and completion, stratum correction, and the
study's eligibility questions on the randomize form; in English and French, blind."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import Container
from app.domain.roles import Role
from app.services.studies import load_study
from tests.builders import study_document
from tests.conftest import TEST_ACTOR
from tests.web.conftest import FakeClock, Person, csrf, login
from tests.web.test_pages import BLIND_LEAKS, UI, randomize, register, trail


def post(web: TestClient, subject_id: str, path: str, **data: str) -> object:
    page = web.get(f"{UI}/subjects/{subject_id}")
    return web.post(
        f"{UI}/subjects/{subject_id}/{path}", data={"csrf_token": csrf(page.text), **data}
    )


def text(response: object) -> str:
    return response.text  # type: ignore[attr-defined,no-any-return]


def status(response: object) -> int:
    return response.status_code  # type: ignore[attr-defined,no-any-return]


class TestSubjectRecordPages:
    def test_screen_failure_then_rescreening(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        login(web, investigator, clock)
        register(web, "FR01-001")
        assert "Record the screen failure" in web.get(f"{UI}/subjects/FR01-001").text

        failed = post(web, "FR01-001", "screen-failure", reason="consent_not_obtained")

        assert status(failed) == 200, text(failed)
        assert "recorded as a screen failure" in text(failed)
        assert "Consent not obtained" in text(failed)
        assert "Randomize this subject" not in text(failed)
        assert "the earlier registration of the same person" in web.get(f"{UI}/subjects/new").text
        page = web.get(f"{UI}/subjects/new")
        again = web.post(
            f"{UI}/subjects/new",
            data={
                "csrf_token": csrf(page.text),
                "subject_id": "FR01-001-R",
                "site": "FR01",
                "stratum_shock": "yes",
                "stratum_age": "lt65",
                "rescreen_of": "FR01-001",
            },
        )
        assert status(again) == 200, text(again)
        assert 'id="rescreen-of"' in text(again)
        assert 'id="rescreened-as"' in web.get(f"{UI}/subjects/FR01-001").text
        twice = post(web, "FR01-001", "screen-failure", reason="death")
        assert status(twice) == 409
        assert "has ended already" in text(twice)
        actions = dict(trail(trial))
        assert actions["subject.screen_failed"] == f"user:{investigator.email}"

    def test_correct_a_stratum_then_discontinue(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-002")
        randomize(web, "FR01-002")

        blank = post(web, "FR01-002", "stratum-correction", correction="shock|no", reason=" ")
        fixed = post(web, "FR01-002", "stratum-correction", correction="shock|no", reason="typo")
        other = post(web, "FR01-002", "discontinuation", reason="other", detail="")
        stopped = post(web, "FR01-002", "discontinuation", reason="death", detail="")

        assert status(blank) == 422
        assert "Say why the answer was wrong" in text(blank)
        assert status(fixed) == 200, text(fixed)
        assert "as randomized; corrected to Sepsis without shock" in text(fixed)
        assert status(other) == 422
        assert "for Other, say which" in text(other)
        assert status(stopped) == 200
        assert "treatment is discontinued" in text(stopped)
        assert 'id="end-reason">Death<' in text(stopped)
        assert not BLIND_LEAKS.search(text(stopped))
        assert "End of participation" not in text(stopped)

    def test_complete(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-003")
        randomize(web, "FR01-003")

        done = post(web, "FR01-003", "completion", detail="all visits")

        assert status(done) == 200
        assert "completed the study" in text(done)
        assert 'id="subject-status">Completed<' in text(done)

    def test_a_pharmacist_sees_no_record_forms(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "FR01-004")
        web.cookies.clear()
        login(web, person(Role.PHARMACIST), clock)

        page = web.get(f"{UI}/subjects/FR01-004")
        refused = web.post(
            f"{UI}/subjects/FR01-004/screen-failure",
            data={"csrf_token": csrf(page.text), "reason": "death"},
        )

        assert "Record the screen failure" not in page.text
        assert "Correct a stratification answer" not in page.text
        assert refused.status_code == 403


class TestEligibilityOnTheRandomizeForm:
    def test_every_statement_must_be_ticked_in_the_users_language(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        questions = [
            {"code": "consent", "text": "Consent signed", "text_fr": "Consentement signé"},
            {"code": "sepsis", "text": "Sepsis confirmed", "text_fr": "Sepsis confirmé"},
        ]
        parsed = parse_document(study_document(eligibility=questions), "test")
        document, _raw, sha = canonical(parsed)
        load_study(trial.uow(TEST_ACTOR), to_domain(parsed), document, sha)
        login(web, person(Role.INVESTIGATOR, locale="fr"), clock)
        register(web, "FR01-005")
        page = web.get(f"{UI}/subjects/FR01-005").text
        assert "Consentement signé" in page
        assert 'name="eligibility_sepsis"' in page

        one = post(web, "FR01-005", "randomization", eligibility_consent="yes")
        both = post(
            web, "FR01-005", "randomization", eligibility_consent="yes", eligibility_sepsis="yes"
        )

        assert status(one) == 422
        assert "Chaque affirmation d&#39;éligibilité doit être confirmée" in text(one)
        assert status(both) == 200, text(both)
        assert 'id="randomization-number"' in text(both)
        assert 'id="eligibility-attested"' in text(both)
