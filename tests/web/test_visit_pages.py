"""The subject page's visit schedule (site-local windows), its forms for a missed visit, a
held dose and an unscheduled dispensation, and the site's due visits page; blinded, in
English and French."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from app.bootstrap import Container
from app.domain.roles import Role
from tests.web.conftest import FakeClock, Person, csrf, login
from tests.web.test_pages import BLIND_LEAKS, UI, randomize, register, trail


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def post_form(web: TestClient, subject_id: str, path: str, **data: str) -> object:
    page = web.get(f"{UI}/subjects/{subject_id}")
    return web.post(
        f"{UI}/subjects/{subject_id}/{path}", data={"csrf_token": csrf(page.text), **data}
    )


def test_schedule_missed_visit_unscheduled_kits_and_due_list(
    web: TestClient, trial: Container, person: Callable[..., Person], clock: FakeClock
) -> None:
    investigator = person(Role.INVESTIGATOR)
    login(web, investigator, clock)
    register(web, "FR01-101")
    start = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    trial.clock = FixedClock(start)  # type: ignore[assignment]
    randomize(web, "FR01-101", "72")

    page = web.get(f"{UI}/subjects/FR01-101").text
    assert 'id="visit-schedule"' in page
    day4 = (start + timedelta(days=2)).date().isoformat()
    assert f"<td>D4</td><td>{day4}</td>" in page
    assert "Record a missed visit or a held dose" not in page  # nothing open to record

    trial.clock = FixedClock(start + timedelta(days=3))  # type: ignore[assignment]
    blank = post_form(web, "FR01-101", "visit-records", visit="D4", kind="missed", reason=" ")
    assert blank.status_code == 422  # type: ignore[attr-defined]
    assert "Give a reason" in blank.text  # type: ignore[attr-defined]
    done = post_form(
        web, "FR01-101", "visit-records", visit="D4", kind="missed", reason="in theatre"
    )
    html = done.text  # type: ignore[attr-defined]
    assert done.status_code == 200, html  # type: ignore[attr-defined]
    assert "The visit is recorded as missed." in html
    assert '<td class="visit-missed">Missed</td>' in html

    extra = post_form(
        web, "FR01-101", "unscheduled-dispensations", weight_kg="72", reason="vial broken"
    )
    assert extra.status_code == 200, extra.text  # type: ignore[attr-defined]
    assert "<td>U1</td>" in extra.text  # type: ignore[attr-defined]

    due = web.get(f"{UI}/due?site=FR01")
    assert due.status_code == 200
    assert "FR01-101" in due.text
    assert "<td>D8</td>" in due.text
    for html in (page, done.text, extra.text, due.text):  # type: ignore[attr-defined]
        assert not BLIND_LEAKS.search(html)
    actions = dict(trail(trial))
    assert actions["visit.missed"] == f"user:{investigator.email}"


def test_due_page_in_french_and_scoped(
    web: TestClient, trial: Container, person: Callable[..., Person], clock: FakeClock
) -> None:
    login(web, person(Role.PHARMACIST, locale="fr"), clock)
    page = web.get(f"{UI}/due")
    assert page.status_code == 200
    assert "Visites dues" in page.text
    assert "Aucun sujet sous traitement" in page.text
    assert web.get(f"{UI}/due?site=FR02").status_code == 404
    assert web.get(f"{UI}/due?on=someday").status_code == 422
