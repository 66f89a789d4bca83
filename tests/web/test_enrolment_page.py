"""The enrolment page: the supply manager (and administrator) sees each site's state and
randomized count with the caps, and closes or reopens a site's enrolment with a reason
(audited, CSRF-checked); the investigator's randomization at a closed site is refused."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.bootstrap import Container
from app.domain.roles import Role
from app.services import enrolment
from tests.conftest import TEST_ACTOR
from tests.web.conftest import FakeClock, Person, csrf, login
from tests.web.test_pages import BLIND_LEAKS, STUDY, UI, randomize, register, trail

PAGE = f"{UI}/enrolment"


def close(web: TestClient, site: str, reason: str) -> object:
    page = web.get(PAGE)
    return web.post(
        f"{PAGE}/sites/{site}/close",
        data={"csrf_token": csrf(page.text), "reason": reason},
        follow_redirects=False,
    )


class TestEnrolmentPage:
    def test_the_supply_manager_closes_and_reopens_a_site(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        enrolment.set_cap(trial.uow(TEST_ACTOR), None, STUDY, "site", "FR01", 40, 50)
        login(web, person(Role.SUPPLY_MANAGER), clock)
        page = web.get(PAGE)
        assert page.status_code == 200, page.text
        assert 'id="site-FR01"' in page.text
        assert "<td>40</td>" in page.text
        assert "<td>50</td>" in page.text
        assert 'href="/ui/studies/iris-7a/enrolment"' in page.text  # in the menu

        response = close(web, "FR01", "target met")

        assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        page = web.get(PAGE + "?done=closed")
        assert "The site is closed to enrolment." in page.text
        assert re.search(r'id="site-FR01">.*?class="enrolment-state">closed<', page.text, re.S)
        assert not BLIND_LEAKS.search(page.text)
        assert any(action == "site.enrolment_closed" for action, _ in trail(trial))
        again = web.post(
            f"{PAGE}/sites/FR01/reopen",
            data={"csrf_token": csrf(page.text), "reason": "more"},
            follow_redirects=False,
        )
        assert again.status_code == 303

    def test_a_reason_is_required_and_the_form_needs_its_token(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.ADMIN), clock)
        response = close(web, "FR01", " ")
        assert response.status_code == 422  # type: ignore[attr-defined]
        assert "Give a reason" in response.text  # type: ignore[attr-defined]
        forged = web.post(f"{PAGE}/sites/FR01/close", data={"reason": "x"})
        assert forged.status_code == 403
        assert not any(action == "site.enrolment_closed" for action, _ in trail(trial))

    def test_a_closed_site_refuses_the_investigators_randomization(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        enrolment.set_site_enrolment(trial.uow(TEST_ACTOR), None, STUDY, "FR01", False, "met")
        login(web, person(Role.INVESTIGATOR), clock)
        register(web, "W-1")
        response = randomize(web, "W-1", "70")
        assert response.status_code == 409  # type: ignore[attr-defined]
        assert "closed to enrolment" in response.text  # type: ignore[attr-defined]

    def test_other_roles_are_refused_and_french_is_spoken(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.PHARMACIST), clock)
        assert web.get(PAGE).status_code == 403
        web.cookies.clear()
        login(web, person(Role.SUPPLY_MANAGER, locale="fr"), clock)
        page = web.get(PAGE)
        assert "Fermer les inclusions" in page.text
        assert "Plafonds d&#39;inclusion" in page.text
