"""The pure rules of a subject's record (app.domain.subjects): screen failure, re-screening,
eligibility attestation and stratum correction; and how a study file states them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.domain.errors import DomainError
from app.domain.study import DEFAULT_SCREEN_FAILURE_REASONS, study_problems
from app.domain.subjects import (
    EligibilityNotConfirmed,
    InvalidScreenFailureReason,
    InvalidStratum,
    RescreeningNotAllowed,
    RescreenLimitReached,
    RescreenOfNotFound,
    RescreenOfNotScreenFailed,
    StratumUnchanged,
    Subject,
    SubjectAlreadyEnded,
    SubjectAlreadyRandomized,
    SubjectAlreadyRescreened,
    SubjectScreenFailed,
    SubjectStatus,
    check_can_end,
    check_can_screen_fail,
    check_eligibility,
    check_randomizable,
    check_rescreen,
    corrected_strata,
    screen_failure_reason,
)
from tests.builders import make_study, set_path, study_document

QUESTIONS = [
    {"code": "consent", "text": "Consent signed?", "text_fr": "Consentement signé ?"},
    {"code": "sepsis", "text": "Sepsis confirmed?"},
]
STUDY = make_study(study_document(eligibility=QUESTIONS))
STRATA = {"shock": "yes", "age": "lt65"}


def subject(status: SubjectStatus = SubjectStatus.REGISTERED, **changes: object) -> Subject:
    base = Subject(
        pk=1,
        study="iris-7a",
        subject_id="S-1",
        site="FR01",
        status=status,
        strata=STRATA,
        registered_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TestStudyFile:
    def test_the_subjects_section_and_the_questions(self) -> None:
        assert (STUDY.rescreening, STUDY.max_rescreens) == (True, 1)
        assert STUDY.screen_failure_reasons == DEFAULT_SCREEN_FAILURE_REASONS
        consent, sepsis = STUDY.eligibility
        assert (consent.text_in("fr"), consent.text_in("en")) == (
            "Consentement signé ?",
            "Consent signed?",
        )
        assert sepsis.text_in("fr") == "Sepsis confirmed?"

    def test_silent_files_ask_nothing_and_allow_no_rescreening(self) -> None:
        doc = study_document()
        del doc["subjects"]
        study = make_study(doc)
        assert (study.rescreening, study.eligibility) == (False, ())

    def test_duplicate_codes_are_problems(self) -> None:
        doc = study_document(eligibility=[QUESTIONS[0], QUESTIONS[0]])
        set_path(doc, "subjects.screen_failure_reasons", ["death", "death"])
        paths = {p.path for p in study_problems(make_study(doc))}
        assert {"eligibility", "subjects.screen_failure_reasons"} <= paths


class TestScreenFailure:
    def test_only_a_registered_subject_fails_screening(self) -> None:
        check_can_screen_fail(subject())
        with pytest.raises(SubjectAlreadyRandomized):
            check_can_screen_fail(subject(SubjectStatus.RANDOMIZED))
        for ended in ("screen_failed", "completed", "discontinued"):
            with pytest.raises(SubjectAlreadyEnded):
                check_can_screen_fail(subject(SubjectStatus(ended)))

    def test_a_screen_failure_is_never_randomized_nor_ended_again(self) -> None:
        with pytest.raises(SubjectScreenFailed):
            check_randomizable(subject(SubjectStatus.SCREEN_FAILED))
        with pytest.raises(SubjectAlreadyEnded):
            check_can_end(subject(SubjectStatus.SCREEN_FAILED))
        check_randomizable(subject())

    def test_reasons(self) -> None:
        assert screen_failure_reason(STUDY, "death", "  ") is None
        assert screen_failure_reason(STUDY, "other", " moved ") == "moved"
        for reason, detail in (("bored", None), ("other", None), ("other", " ")):
            with pytest.raises(InvalidScreenFailureReason):
                screen_failure_reason(STUDY, reason, detail)


class TestRescreen:
    failed = subject(SubjectStatus.SCREEN_FAILED)

    def test_a_screen_failure_is_rescreened(self) -> None:
        assert check_rescreen(STUDY, self.failed, 0, False) is self.failed

    @pytest.mark.parametrize(
        ("study", "earlier", "before", "already", "error"),
        [
            (replace(STUDY, rescreening=False), failed, 0, False, RescreeningNotAllowed),
            (STUDY, None, 0, False, RescreenOfNotFound),
            (STUDY, subject(), 0, False, RescreenOfNotScreenFailed),
            (STUDY, failed, 0, True, SubjectAlreadyRescreened),
            (STUDY, failed, 1, False, RescreenLimitReached),
        ],
        ids=["not allowed", "not found", "not failed", "twice", "limit"],
    )
    def test_refusals(
        self,
        study: object,
        earlier: Subject | None,
        before: int,
        already: bool,
        error: type[DomainError],
    ) -> None:
        with pytest.raises(error):
            check_rescreen(study, earlier, before, already)  # type: ignore[arg-type]

    def test_the_limit_is_the_studys(self) -> None:
        check_rescreen(replace(STUDY, max_rescreens=2), self.failed, 1, False)


class TestEligibility:
    def test_every_question_yes(self) -> None:
        answers = check_eligibility(STUDY, {"sepsis": True, "consent": True})
        assert list(answers) == ["consent", "sepsis"]

    @pytest.mark.parametrize(
        "answers",
        [
            None,
            {},
            {"consent": True},
            {"consent": True, "sepsis": False},
            {"consent": True, "sepsis": True, "pregnant": False},
        ],
    )
    def test_refused(self, answers: dict[str, bool] | None) -> None:
        with pytest.raises(EligibilityNotConfirmed):
            check_eligibility(STUDY, answers)

    def test_a_study_without_questions(self) -> None:
        plain = replace(STUDY, eligibility=())
        assert check_eligibility(plain, None) == check_eligibility(plain, {}) == {}
        with pytest.raises(EligibilityNotConfirmed):
            check_eligibility(plain, {"consent": True})


class TestStratumCorrection:
    def test_from_the_registered_levels_then_from_the_corrected_ones(self) -> None:
        first = corrected_strata(STUDY, subject(SubjectStatus.RANDOMIZED), "shock", "no")
        assert first == {"shock": "no", "age": "lt65"}
        again = subject(SubjectStatus.COMPLETED, strata_corrected=first)
        assert corrected_strata(STUDY, again, "age", "ge65") == {"shock": "no", "age": "ge65"}
        assert corrected_strata(STUDY, again, "shock", "yes") == {"shock": "yes", "age": "lt65"}

    def test_refusals(self) -> None:
        randomized = subject(SubjectStatus.RANDOMIZED)
        with pytest.raises(InvalidStratum):
            corrected_strata(STUDY, randomized, "sex", "f")
        with pytest.raises(InvalidStratum):
            corrected_strata(STUDY, randomized, "shock", "maybe")
        with pytest.raises(StratumUnchanged):
            corrected_strata(STUDY, randomized, "shock", "yes")
        with pytest.raises(SubjectScreenFailed):
            corrected_strata(STUDY, subject(SubjectStatus.SCREEN_FAILED), "shock", "no")
