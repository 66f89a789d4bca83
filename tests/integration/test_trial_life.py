"""Issue 18's "done when": a scripted trial of both studies with a trial's life at the site.

Day by day on a controlled clock, through the HTTP API as the EDC system, the investigators,
the pharmacists, the supply manager and the statistician would: subjects arrive over the
first days; one fails screening and is re-screened under a new id, linked to the first;
one subject's stratum was entered wrong and is corrected after randomization; visits are
missed and a dose is held, and the later visits are still dosed in their own windows; one
subject dies and one withdraws consent; the supply manager closes the last site to
enrolment on day 2, so the subject who arrives there next is refused and is recorded as a
screen failure, while the site keeps dosing (and being resupplied for) its subjects on
treatment. Every subject still on treatment after the last visit completes.

At the end: every randomized subject ended `completed` or `discontinued`, every other one
`screen_failed`; each subject's history is in the audit trail; the statistician's export
shows the corrected stratum beside the one used; nothing blinded carried an arm or a kit
type.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app.bootstrap import Container
from app.domain.study import Study
from app.services.housekeeping import housekeeping
from app.services.randomization import generate_list
from app.services.supply import generate_kits
from tests.api import conftest as api_fixtures
from tests.api.conftest import Login
from tests.conftest import TEST_ACTOR
from tests.integration.test_full_trial import Blinded, SteppedClock, secrets_of, study_of

STUDIES = ("iris-7a", "iris-7b")

loaded = api_fixtures.loaded
client = api_fixtures.client
make_client = api_fixtures.make_client
login = api_fixtures.login


@dataclass
class Plan:
    """One subject's script: when it arrives, and what happens to it."""

    number: int
    arrival_day: int
    site_index: int = 0
    screen_fail: bool = False
    rescreened_as: int | None = None  # re-screened under this number, the same day
    correct_stratum: bool = False
    missed: tuple[int, ...] = ()  # visit indexes recorded missed
    held: tuple[int, ...] = ()  # visit indexes whose dose is held
    ends_after: tuple[int, str] | None = None  # (visit index, reason): discontinued then
    at_closed_site: bool = False


PLANS = (
    Plan(1, 0, 0, screen_fail=True, rescreened_as=9),
    Plan(2, 0, 1, correct_stratum=True),
    Plan(3, 0, 0, missed=(2,)),
    Plan(4, 1, 1, held=(3,), missed=(5,)),
    Plan(5, 1, 0, ends_after=(3, "death")),
    Plan(6, 1, 1, ends_after=(2, "consent_withdrawn")),
    Plan(7, 1, -1),  # the last active site, closed to enrolment on day 2
    Plan(8, 3, -1, at_closed_site=True),
)


@dataclass
class Subject:
    study: str
    plan: Plan
    subject_id: str
    site: str
    strata: dict[str, str]
    randomized_day: int | None = None
    done: dict[int, str] = field(default_factory=dict)  # visit index -> dispensed|missed|held
    ended: bool = False


def subject_id(slug: str, number: int) -> str:
    return f"{slug.upper()}-{number:04d}"


def strata_for(study: Study, number: int) -> dict[str, str]:
    return {
        f.code: f.levels[(number + n) % len(f.levels)].code for n, f in enumerate(study.factors)
    }


def test_a_trials_life_at_the_site(
    client: TestClient, loaded: Container, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppedClock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    monkeypatch.setattr(loaded, "clock", clock)
    blinded = Blinded()
    studies = {slug: study_of(loaded, slug) for slug in STUDIES}
    edc: dict[str, dict[str, str]] = {}
    investigators: dict[tuple[str, str], dict[str, str]] = {}
    pharmacists: dict[tuple[str, str], dict[str, str]] = {}
    supply_manager: dict[str, dict[str, str]] = {}
    subjects: list[Subject] = []
    closed: dict[str, str] = {}
    for slug, study in studies.items():
        generate_list(loaded.uow(TEST_ACTOR), "test", slug)
        generate_kits(loaded.uow(TEST_ACTOR), slug)
        edc[slug] = login("edc", studies=[slug])
        supply_manager[slug] = login("supply_manager", studies=[slug])
        sites = [s.code for s in study.sites if s.active]
        closed[slug] = sites[-1]
        for site in sites:
            investigators[(slug, site)] = login("investigator", studies=[slug], sites=[site])
            pharmacists[(slug, site)] = login("pharmacist", studies=[slug], sites=[site])
        for plan in PLANS:
            subjects.append(
                Subject(
                    slug,
                    plan,
                    subject_id(slug, plan.number),
                    sites[plan.site_index],
                    strata_for(study, plan.number),
                )
            )

    def post(what: str, url: str, headers: dict[str, str], body: Any = None) -> Response:
        return blinded.keep(what, client.post(url, json=body, headers=headers))

    def randomize(subject: Subject, day: int) -> Response:
        api = f"/api/v1/studies/{subject.study}"
        response = post(
            "randomize",
            f"{api}/subjects/{subject.subject_id}/randomization",
            edc[subject.study],
            {"weight_kg": "70"},
        )
        if response.status_code == 201:
            subject.randomized_day = day
            subject.done[0] = "dispensed"
        return response

    def register(subject: Subject, rescreen_of: str | None = None) -> None:
        body: dict[str, Any] = {
            "subject_id": subject.subject_id,
            "site_id": subject.site,
            "strata": subject.strata,
        }
        if rescreen_of is not None:
            body["rescreen_of"] = rescreen_of
        registered = post(
            "register", f"/api/v1/studies/{subject.study}/subjects", edc[subject.study], body
        )
        assert registered.status_code == 201, registered.text

    waited: list[str] = []  # visits refused for supply one day, served the next
    last_visit_day = max(v.day + v.window_after for s in studies.values() for v in s.visits)
    for day in range(max(p.arrival_day for p in PLANS) + last_visit_day + 2):
        clock.day = day
        for (slug, site), headers in pharmacists.items():
            api = f"/api/v1/studies/{slug}"
            listed = blinded.keep(
                "shipments",
                client.get(f"{api}/shipments", params={"site_id": site}, headers=headers),
            )
            assert listed.status_code == 200, listed.text
            for shipment in listed.json()["shipments"]:
                if shipment["status"] == "in_transit":
                    receipt = post(
                        "receipt", f"{api}/shipments/{shipment['shipment_id']}/receipt", headers
                    )
                    assert receipt.status_code == 200, receipt.text
        housekeeping(lambda: loaded.uow(TEST_ACTOR))

        if day == 2:
            for slug, site in closed.items():
                closure = post(
                    "close",
                    f"/api/v1/studies/{slug}/sites/{site}/enrolment-closure",
                    supply_manager[slug],
                    {"reason": "recruitment target of the site reached"},
                )
                assert closure.status_code == 200, closure.text

        for subject in list(subjects):
            plan = subject.plan
            if plan.arrival_day != day or plan.number == 9:
                continue
            api = f"/api/v1/studies/{subject.study}"
            investigator = investigators[(subject.study, subject.site)]
            register(subject)
            if plan.screen_fail:
                failed = post(
                    "screen failure",
                    f"{api}/subjects/{subject.subject_id}/screen-failure",
                    investigator,
                    {"reason": "inclusion_criterion_not_met", "detail": "lactate below threshold"},
                )
                assert failed.status_code == 200, failed.text
                subject.ended = True
                assert plan.rescreened_as is not None
                again = Subject(
                    subject.study,
                    Plan(plan.rescreened_as, day, plan.site_index),
                    subject_id(subject.study, plan.rescreened_as),
                    subject.site,
                    subject.strata,
                )
                subjects.append(again)
                register(again, rescreen_of=subject.subject_id)
                assert randomize(again, day).status_code == 201
                continue
            response = randomize(subject, day)
            if plan.at_closed_site:
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "site_enrolment_closed"
                failed = post(
                    "screen failure",
                    f"{api}/subjects/{subject.subject_id}/screen-failure",
                    investigator,
                    {"reason": "other", "detail": "site closed to enrolment"},
                )
                assert failed.status_code == 200, failed.text
                subject.ended = True
                continue
            assert response.status_code == 201, response.text
            if plan.correct_stratum:
                factor = studies[subject.study].factors[0]
                level = next(
                    lv.code for lv in factor.levels if lv.code != subject.strata[factor.code]
                )
                corrected = post(
                    "stratum correction",
                    f"{api}/subjects/{subject.subject_id}/stratum-correction",
                    investigator,
                    {"factor": factor.code, "level": level, "reason": "entered on the wrong line"},
                )
                assert corrected.status_code == 200, corrected.text

        for subject in subjects:
            if subject.randomized_day is None or subject.ended:
                continue
            study = studies[subject.study]
            api = f"/api/v1/studies/{subject.study}/subjects/{subject.subject_id}"
            pharmacy = pharmacists[(subject.study, subject.site)]
            for index, visit in enumerate(study.visits):
                due_on = subject.randomized_day + visit.day
                if index == 0 or index in subject.done:
                    continue
                if not due_on <= day <= due_on + visit.window_after:
                    continue
                if index in subject.plan.missed or index in subject.plan.held:
                    kind = "missed" if index in subject.plan.missed else "held"
                    recorded = post(
                        kind,
                        f"{api}/visits/{visit.code}/{kind}",
                        investigators[(subject.study, subject.site)],
                        {"reason": "in theatre for source control"},
                    )
                    assert recorded.status_code == 201, recorded.text
                    subject.done[index] = kind
                else:
                    given = post(
                        "dispense",
                        f"{api}/dispensations",
                        pharmacy,
                        {"visit": visit.code, "weight_kg": "70"},
                    )
                    short = given.status_code == 409 and "insufficient_supply" in given.text
                    if short and day < due_on + visit.window_after:
                        # As a site would: the emergency shipment comes tomorrow, in the window.
                        waited.append(f"{subject.subject_id} {visit.code} day {day}")
                        break
                    assert given.status_code == 201, (subject.subject_id, visit.code, given.text)
                    subject.done[index] = "dispensed"
                ends = subject.plan.ends_after
                if ends is not None and ends[0] == index:
                    ended = post(
                        "discontinue",
                        f"{api}/discontinuation",
                        edc[subject.study],
                        {"reason": ends[1]},
                    )
                    assert ended.status_code == 200, ended.text
                    subject.ended = True
                    break
                if index == len(study.visits) - 1:
                    completed = post("complete", f"{api}/completion", edc[subject.study])
                    assert completed.status_code == 200, completed.text
                    subject.ended = True
            # An ended subject is no longer due anywhere.
            due = blinded.keep(
                "due",
                client.get(
                    f"/api/v1/studies/{subject.study}/sites/{subject.site}/due", headers=pharmacy
                ),
            )
            assert due.status_code == 200, due.text
            listed = json.dumps(due.json())
            assert (subject.subject_id in listed) is not subject.ended, (subject.subject_id, listed)

    # Every subject ended, as scripted.
    auditor = {slug: login("auditor", studies=[slug]) for slug in STUDIES}
    for subject in subjects:
        api = f"/api/v1/studies/{subject.study}/subjects/{subject.subject_id}"
        seen = blinded.keep("subject", client.get(api, headers=edc[subject.study]))
        assert seen.status_code == 200, seen.text
        status = seen.json()["status"]
        plan = subject.plan
        if plan.screen_fail or plan.at_closed_site:
            expected = "screen_failed"
        elif plan.ends_after is not None:
            expected = "discontinued"
        else:
            expected = "completed"
        assert status == expected, (subject.subject_id, seen.text)
        visits = len(studies[subject.study].visits)
        if expected == "completed":
            assert sorted(subject.done) == list(range(visits)), subject.subject_id
        history = client.get(
            f"/api/v1/studies/{subject.study}/audit",
            params={"subject_id": subject.subject_id, "limit": 1000},
            headers=auditor[subject.study],
        )
        assert history.status_code == 200, history.text
        actions = [e["action"] for e in history.json()["events"]]
        assert f"subject.{expected}" in actions, (subject.subject_id, actions)
        assert actions.count("dispensation.created") == sum(
            1 for kind in subject.done.values() if kind == "dispensed"
        ), (subject.subject_id, actions)
        missed_or_held = sum(1 for kind in subject.done.values() if kind != "dispensed")
        assert len([a for a in actions if a.startswith("visit.")]) == missed_or_held, actions

    # The statistician's export: the stratum used, and the one corrected beside it.
    statistician = login("unblinded_statistician", studies=list(STUDIES))
    pooled = client.get(
        "/api/v1/pooled/allocations",
        params={"studies": ",".join(STUDIES)},
        headers=statistician,
    )
    assert pooled.status_code == 200, pooled.text
    rows = {r["subject"]: r for r in csv.DictReader(io.StringIO(pooled.text))}
    for subject in subjects:
        row = rows.get(subject.subject_id)
        if subject.randomized_day is None:
            assert row is None
            continue
        assert row is not None
        assert bool(row["stratum_corrected"]) is subject.plan.correct_stratum, row

    # No blinded response carried a kit type or an arm.
    secrets = set().union(*(secrets_of(s) for s in studies.values()))
    leaks = [
        f"{what}: {secret}"
        for what, text in blinded.responses
        for secret in secrets
        if secret in text
    ]
    assert leaks == []
