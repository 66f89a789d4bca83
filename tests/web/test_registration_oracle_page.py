"""The registration page keeps the API's rule (issue 19): an id held by a subject at a site
the user may not see is refused like an id reserved to such a site, and the page says
nothing of the other site."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

from app.domain.roles import Role
from tests.web import test_pages
from tests.web.conftest import FakeClock, Person, login


def register(web: TestClient, subject_id: str, site: str = "FR01") -> httpx.Response:
    response = test_pages.register(web, subject_id, site)
    assert isinstance(response, httpx.Response)
    return response


class TestRegistrationPage:
    def test_an_id_taken_at_another_site_reads_like_a_reserved_one(
        self, web: TestClient, person: Callable[..., Person], clock: FakeClock
    ) -> None:
        login(web, person(Role.INVESTIGATOR, sites=["FR02"]), clock)
        assert register(web, "S-0042", site="FR02").status_code == 200
        web.cookies.clear()
        login(web, person(Role.INVESTIGATOR, sites=["FR01"]), clock)
        taken = register(web, "S-0042")
        reserved = register(web, "FR02-0042")
        for refused in (taken, reserved):
            assert refused.status_code == 409
            text = refused.text
            assert "cannot be registered at your sites" in text
            assert "registered already" not in text
            assert "Hospices Civils de Lyon" not in text
        assert taken.text.replace("S-0042", "X") == reserved.text.replace("FR02-0042", "X")

    def test_the_subjects_own_site_is_told_it_is_registered(
        self, web: TestClient, person: Callable[..., Person], clock: FakeClock
    ) -> None:
        login(web, person(Role.INVESTIGATOR, sites=["FR02"]), clock)
        assert register(web, "FR02-0043", site="FR02").status_code == 200
        again = register(web, "FR02-0043", site="FR02")
        assert again.status_code == 409
        assert "registered already" in again.text
        web.cookies.clear()
        login(web, person(Role.INVESTIGATOR, sites=["FR01"]), clock)
        other = register(web, "FR02-0043")
        assert "cannot be registered at your sites" in other.text
