"""The excursion list (pharmacist and supply manager) and the administrator's user pages:
each calls the use cases of the API and of `iwrs users`, keeps the scope, carries the CSRF
token, and keeps the blind."""

from __future__ import annotations

import re
from collections.abc import Callable

import pyotp
from fastapi.testclient import TestClient

from app.adapters.crypto.totp import Totp
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.kits import KitStatus
from app.domain.roles import Role
from app.services import supply
from app.services import users as user_service
from tests.conftest import TEST_ACTOR
from tests.web.conftest import PASSWORD, FakeClock, Person, csrf, login
from tests.web.test_pages import BLIND_LEAKS, STUDY, UI, trail

KIT_TYPES = re.compile(r"KT_\w+|kit_type", re.IGNORECASE)


def _fr01_kits(container: Container) -> list[str]:
    with container.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments(STUDY, site="FR01")
    return list(shipment.kit_numbers)


def _report(container: Container, site: str, kits: list[str], what: str) -> str:
    pharmacist = Principal(
        "web-tests", Role.PHARMACIST, frozenset({STUDY}), {STUDY: frozenset({site})}
    )
    found = supply.report_excursion(
        container.uow(TEST_ACTOR), pharmacist, STUDY, what, site=site, kit_numbers=kits
    )
    return found.code


def _kit_status(container: Container, number: str) -> KitStatus:
    with container.uow(TEST_ACTOR) as uow:
        (kit,) = uow.supply.kits(STUDY, numbers=[number])
    return kit.status


class TestExcursionList:
    def test_the_pharmacist_sees_the_excursions_of_their_site_without_a_decision(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.PHARMACIST), clock)
        empty = web.get(f"{UI}/excursions")
        assert empty.status_code == 200, empty.text
        assert "No open excursion." in empty.text
        kits = _fr01_kits(trial)
        form = web.get(f"{UI}/excursions/new")
        reported = web.post(
            f"{UI}/excursions/new",
            data={
                "csrf_token": csrf(form.text),
                "site": "FR01",
                "kit_numbers": kits[0],
                "description": "fridge at 12 °C for 3 hours",
            },
        )
        code = re.search(r"Excursion (EX-[0-9A-F]+) recorded", reported.text)
        assert code is not None, reported.text
        listed = web.get(f"{UI}/excursions")
        assert listed.status_code == 200
        table = listed.text.split('id="open-excursions"')[1].split("</table>")[0]
        assert code.group(1) in table
        assert kits[0] in table
        assert "fridge at 12 °C for 3 hours" in table
        assert "/excursions/resolve" not in listed.text  # the supply manager decides
        assert "No resolved excursion." in listed.text
        assert "Excursion list" in web.get("/ui/").text
        assert not BLIND_LEAKS.search(listed.text)
        assert not KIT_TYPES.search(listed.text)

    def test_another_sites_excursions_are_not_shown(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        code = _report(trial, "FR01", _fr01_kits(trial)[:1], "power cut")
        login(web, person(Role.PHARMACIST, sites=["FR02"]), clock)
        listed = web.get(f"{UI}/excursions")
        assert listed.status_code == 200
        assert code not in listed.text
        assert "No open excursion." in listed.text
        # Asking for a site outside the grant shows the user's own sites, not the other's.
        other = web.get(f"{UI}/excursions", params={"site": "FR01"})
        assert code not in other.text

    def test_the_supply_manager_resolves_from_the_list(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        kits = _fr01_kits(trial)
        released = _report(trial, "FR01", kits[:2], "door left open overnight")
        rejected = _report(trial, "FR01", kits[2:3], "freezer at -30 °C")
        manager = person(Role.SUPPLY_MANAGER)
        login(web, manager, clock)
        listed = web.get(f"{UI}/excursions")
        assert listed.status_code == 200
        for code in (released, rejected):
            assert f'href="{UI}/excursions/resolve?excursion_code={code}"' in listed.text
        form = web.get(f"{UI}/excursions/resolve", params={"excursion_code": released})
        assert f'value="{released}"' in form.text
        for code, decision in ((released, "release"), (rejected, "reject")):
            done = web.post(
                f"{UI}/excursions/resolve",
                data={
                    "csrf_token": csrf(form.text),
                    "excursion_code": code,
                    "decision": decision,
                    "reason": "logger data reviewed",
                },
            )
            assert done.status_code == 200, done.text
        assert _kit_status(trial, kits[0]) is KitStatus.AT_SITE
        assert _kit_status(trial, kits[2]) is KitStatus.DESTROYED
        after = web.get(f"{UI}/excursions", params={"site": "FR01"})
        assert "No open excursion." in after.text
        table = after.text.split('id="resolved-excursions"')[1].split("</table>")[0]
        rows = {
            code: row
            for row in table.split("<tr>")[2:]
            for code in (released, rejected)
            if code in row
        }
        assert "Released: usable again" in rows[released]
        assert "Rejected: destroyed" in rows[rejected]
        assert f"user:{manager.email}" in rows[released]
        assert not BLIND_LEAKS.search(after.text)
        assert not KIT_TYPES.search(after.text)

    def test_other_roles_are_refused(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        refused = web.get(f"{UI}/excursions")
        assert refused.status_code == 403
        assert "Excursion list" not in web.get("/ui/").text

    def test_in_french(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        _report(trial, "FR01", _fr01_kits(trial)[:1], "panne")
        login(web, person(Role.SUPPLY_MANAGER, locale="fr"), clock)
        page = web.get(f"{UI}/excursions")
        assert "Excursions de température" in page.text
        assert "En cours : kits en quarantaine" in page.text
        assert "Temperature excursions" not in page.text


def _create_form(web: TestClient) -> str:
    page = web.get("/ui/users/new")
    assert page.status_code == 200, page.text
    return csrf(page.text)


def _user(container: Container, email: str) -> user_service.WebUser | None:
    with container.uow(TEST_ACTOR) as uow:
        return uow.users.by_email(email)


class TestUserManagement:
    def test_the_admin_creates_a_user_who_can_enrol_with_the_code_shown_once(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        admin = person(Role.ADMIN)
        login(web, admin, clock)
        home = web.get("/ui/")
        assert 'href="/ui/users"' in home.text
        listing = web.get("/ui/users")
        assert listing.status_code == 200
        assert admin.email in listing.text
        created = web.post(
            "/ui/users/new",
            data={
                "csrf_token": _create_form(web),
                "email": "New.Pharmacist@chu-limoges.example.fr",
                "role": "pharmacist",
                "studies": [STUDY],
                "sites": ["FR01", "FR02"],
                "language": "fr",
            },
        )
        assert created.status_code == 200, created.text
        code = re.search(r'id="enrolment-code">([A-Z0-9-]+)<', created.text)
        assert code is not None
        assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code.group(1))
        assert created.headers["cache-control"] == "no-store"
        email = "new.pharmacist@chu-limoges.example.fr"
        user = _user(trial, email)
        assert user is not None
        assert user.role is Role.PHARMACIST
        assert user.studies == frozenset({STUDY})
        assert user.sites == {STUDY: frozenset({"FR01", "FR02"})}
        assert user.locale == "fr"
        assert ("user.created", f"user:{admin.email}") in trail(trial)
        # Shown once: the list does not show it again.
        again = web.get("/ui/users")
        assert code.group(1) not in again.text
        assert email in again.text
        assert "Enrolment pending" in again.text
        # The code is the real one: the new user enrols with it.
        enrolment = user_service.begin_enrolment(
            trial.uow(TEST_ACTOR),
            trial.hasher,
            Totp(),
            email=email,
            code=code.group(1),
            password=PASSWORD,
            now=clock(),
        )
        assert pyotp.TOTP(enrolment.secret).now()
        assert not BLIND_LEAKS.search(created.text + again.text)

    def test_invalid_grants_are_refused_with_what_to_do(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.ADMIN), clock)
        token = _create_form(web)
        cases = [
            {"email": "a@chu.example.fr", "role": "pharmacist", "studies": [STUDY]},  # no site
            {"email": "b@chu.example.fr", "role": "auditor"},  # no study
            {"email": "c@chu.example.fr", "role": "edc", "studies": [STUDY]},  # a system
            {"email": "not an address", "role": "auditor", "studies": [STUDY]},
        ]
        for data in cases:
            refused = web.post("/ui/users/new", data={"csrf_token": token, **data})
            assert refused.status_code == 400, data
            assert "The user could not be created" in refused.text
            assert str(data["email"]) in refused.text  # what was typed is kept
            assert _user(trial, str(data["email"])) is None

    def test_an_admin_of_some_studies_grants_only_those(
        self, web: TestClient, trial: Container, person: Callable[..., Person], clock: FakeClock
    ) -> None:
        admin = person(Role.ADMIN, studies=[STUDY])
        login(web, admin, clock)
        for studies in (["iris-7b"], [STUDY, "iris-7b"], []):
            refused = web.post(
                "/ui/users/new",
                data={
                    "csrf_token": _create_form(web),
                    "email": "someone@chu.example.fr",
                    "role": "admin" if not studies else "auditor",
                    "studies": studies,
                },
            )
            assert refused.status_code == 400, (studies, refused.text)
            assert _user(trial, "someone@chu.example.fr") is None
        granted = web.post(
            "/ui/users/new",
            data={
                "csrf_token": _create_form(web),
                "email": "audit@chu.example.fr",
                "role": "auditor",
                "studies": [STUDY],
            },
        )
        assert granted.status_code == 200, granted.text
        user = _user(trial, "audit@chu.example.fr")
        assert user is not None
        assert user.studies == frozenset({STUDY})

    def test_the_admin_disables_a_user_with_a_reason(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        admin = person(Role.ADMIN)
        login(web, admin, clock)
        listing = web.get("/ui/users")
        token = csrf(listing.text)
        missing = web.post(
            "/ui/users/disable", data={"csrf_token": token, "email": investigator.email}
        )
        assert missing.status_code == 422
        assert "Give the reason" in missing.text
        user = _user(trial, investigator.email)
        assert user is not None
        assert not user.disabled
        done = web.post(
            "/ui/users/disable",
            data={"csrf_token": token, "email": investigator.email, "reason": "left the unit"},
        )
        assert done.status_code == 200, done.text
        assert "The user is disabled" in done.text
        user = _user(trial, investigator.email)
        assert user is not None
        assert user.disabled
        assert ("user.disabled", f"user:{admin.email}") in trail(trial)
        row = re.search(
            rf'<tr data-email="{re.escape(investigator.email)}">.*?</tr>', done.text, re.S
        )
        assert row is not None
        assert "Disabled" in row.group(0)
        # The disabled user's login is refused.
        other = TestClient(web.app, base_url=str(web.base_url))
        page = other.get("/ui/login")
        refused = other.post(
            "/ui/login",
            data={
                "csrf_token": csrf(page.text),
                "email": investigator.email,
                "password": investigator.password,
            },
            follow_redirects=False,
        )
        assert refused.status_code == 401

    def test_a_form_without_its_csrf_token_changes_nothing(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        auditor = person(Role.AUDITOR)
        login(web, person(Role.ADMIN), clock)
        _create_form(web)
        data = {"email": "forged@chu.example.fr", "role": "auditor", "studies": [STUDY]}
        for token in ({}, {"csrf_token": "forged"}):
            forged = web.post("/ui/users/new", data={**token, **data})
            assert forged.status_code == 403
            assert "nothing was done" in forged.text
            disabled = web.post(
                "/ui/users/disable", data={**token, "email": auditor.email, "reason": "x"}
            )
            assert disabled.status_code == 403
        assert _user(trial, "forged@chu.example.fr") is None
        user = _user(trial, auditor.email)
        assert user is not None
        assert not user.disabled

    def test_other_roles_are_refused(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        target = person(Role.PHARMACIST)
        for role in (Role.INVESTIGATOR, Role.AUDITOR, Role.UNBLINDED_STATISTICIAN):
            web.cookies.clear()
            login(web, person(role), clock)
            home = web.get("/ui/")
            assert "Manage users" not in home.text
            token = csrf(home.text)
            for path in ("/ui/users", "/ui/users/new"):
                refused = web.get(path)
                assert refused.status_code == 403, (role, path)
                assert "This page is not for your role" in refused.text
            created = web.post(
                "/ui/users/new",
                data={
                    "csrf_token": token,
                    "email": f"{role.value}.made@chu.example.fr",
                    "role": "admin",
                },
            )
            assert created.status_code == 403
            assert _user(trial, f"{role.value}.made@chu.example.fr") is None
            disabled = web.post(
                "/ui/users/disable",
                data={"csrf_token": token, "email": target.email, "reason": "x"},
            )
            assert disabled.status_code == 403
        user = _user(trial, target.email)
        assert user is not None
        assert not user.disabled

    def test_in_french(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.ADMIN, locale="fr"), clock)
        assert "Gérer les utilisateurs" in web.get("/ui/").text
        listing = web.get("/ui/users")
        assert "Créer un utilisateur" in listing.text
        assert "Create a user" not in listing.text
        form = web.get("/ui/users/new")
        assert "Créer l&#39;utilisateur" in form.text
        assert "Pharmacien" in form.text
