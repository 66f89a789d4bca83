"""Sessions, two factors, CSRF, lock-out, idle timeout and enrolment on the web pages."""

from __future__ import annotations

from collections.abc import Callable

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.adapters.db.audit import iter_chain
from app.adapters.db.models_web import WebSessionRow
from app.bootstrap import Container
from app.domain.clients import MAX_FAILURES
from app.domain.roles import Role
from app.services import users as user_service
from tests.conftest import TEST_ACTOR
from tests.web.conftest import FakeClock, Person, csrf, login, user_service_factor

STUDY = "iris-7a"


def actions(container: Container, chain: str = STUDY) -> list[str]:
    with container.uow(TEST_ACTOR) as uow:
        return [r.action for r in iter_chain(uow.session, chain)]


def post_login(client: TestClient, email: str, password: str) -> int:
    page = client.get("/ui/login")
    response = client.post(
        "/ui/login",
        data={"csrf_token": csrf(page.text), "email": email, "password": password},
        follow_redirects=False,
    )
    return response.status_code


class TestNoSession:
    def test_every_page_but_login_and_enrolment_sends_to_login(self, web: TestClient) -> None:
        for path in (
            "/ui/",
            f"/ui/studies/{STUDY}/audit",
            f"/ui/studies/{STUDY}/lists/qc",
            f"/ui/studies/{STUDY}/subjects/new",
            f"/ui/studies/{STUDY}/kits",
            f"/ui/studies/{STUDY}/excursions",
            "/ui/users",
            "/ui/users/new",
        ):
            response = web.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/ui/login"), path
        assert web.get("/ui/login").status_code == 200
        assert web.get("/ui/enrol").status_code == 200

    def test_root_leads_to_login(self, web: TestClient) -> None:
        response = web.get("/")
        assert response.url.path == "/ui/login"

    def test_a_forged_cookie_is_no_session(self, web: TestClient) -> None:
        web.cookies.set("iwrs_session", "made-up")
        response = web.get("/ui/", follow_redirects=False)
        assert response.status_code == 303


class TestLogin:
    def test_both_factors_open_a_session_in_a_strict_cookie(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        page = web.get("/ui/login")
        response = web.post(
            "/ui/login",
            data={
                "csrf_token": csrf(page.text),
                "email": investigator.email,
                "password": investigator.password,
            },
            follow_redirects=False,
        )
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "Secure" in cookie
        assert "SameSite=strict" in cookie
        # Half-way (password only), no page opens.
        assert web.get("/ui/", follow_redirects=False).status_code == 303
        page = web.get("/ui/login/code")
        response = web.post(
            "/ui/login/code",
            data={"csrf_token": csrf(page.text), "code": investigator.code(clock)},
        )
        assert response.status_code == 200
        assert investigator.email in response.text
        token = web.cookies.get("iwrs_session")
        assert token
        with loaded.uow(TEST_ACTOR) as uow:
            stored = uow.session.scalars(select(WebSessionRow.token_hash)).all()
        assert token not in stored
        assert user_service.token_hash(token) in stored
        assert "auth.login" in actions(loaded)
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    def test_a_wrong_code_or_a_replayed_one_is_refused(
        self, web: TestClient, person: Callable[..., Person], clock: FakeClock
    ) -> None:
        user = person(Role.AUDITOR)
        assert post_login(web, user.email, user.password) == 303
        page = web.get("/ui/login/code")
        response = web.post(
            "/ui/login/code", data={"csrf_token": csrf(page.text), "code": "000000"}
        )
        assert response.status_code == 401
        assert "not right" in response.text
        code = user.code(clock)
        assert (
            web.post(
                "/ui/login/code",
                data={"csrf_token": csrf(page.text), "code": code},
                follow_redirects=False,
            ).status_code
            == 303
        )
        web.cookies.clear()
        assert post_login(web, user.email, user.password) == 303
        page = web.get("/ui/login/code")
        replay = web.post("/ui/login/code", data={"csrf_token": csrf(page.text), "code": code})
        assert replay.status_code == 401

    def test_failures_slow_then_lock_and_are_audited(
        self, web: TestClient, person: Callable[..., Person], loaded: Container
    ) -> None:
        user = person(Role.PHARMACIST)
        for _ in range(MAX_FAILURES - 1):
            assert post_login(web, user.email, "not the password") == 401
        assert post_login(web, user.email, "not the password") == 401
        # Locked: the right password is refused too, with what to do next.
        page = web.get("/ui/login")
        response = web.post(
            "/ui/login",
            data={"csrf_token": csrf(page.text), "email": user.email, "password": user.password},
        )
        assert response.status_code == 429
        assert "Wait 15 minutes" in response.text
        trail = actions(loaded)
        assert trail.count("auth.login_refused") == MAX_FAILURES - 1
        assert "auth.user_locked" in trail

    def test_unknown_addresses_are_refused_alike(self, web: TestClient, loaded: Container) -> None:
        assert post_login(web, "nobody@example.org", "whatever-password") == 401
        assert "auth.login_refused" in actions(loaded, "_system")


class TestSessionEnd:
    def test_idle_timeout_ends_the_session(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        login(web, person(Role.AUDITOR), clock)
        clock.advance(minutes=14)
        assert web.get("/ui/", follow_redirects=False).status_code == 200
        clock.advance(minutes=16)
        response = web.get("/ui/", follow_redirects=False)
        assert response.status_code == 303
        assert "expired=1" in response.headers["location"]
        assert "auth.session_expired" in actions(loaded)
        clock.advance(seconds=1)
        assert web.get("/ui/", follow_redirects=False).status_code == 303

    def test_logout_ends_the_session_for_good(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        login(web, person(Role.AUDITOR), clock)
        token = web.cookies.get("iwrs_session")
        home = web.get("/ui/")
        web.post("/ui/logout", data={"csrf_token": csrf(home.text)})
        assert "auth.logout" in actions(loaded)
        web.cookies.set("iwrs_session", token or "")
        assert web.get("/ui/", follow_redirects=False).status_code == 303

    def test_disabling_a_user_ends_their_sessions(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        user = person(Role.AUDITOR)
        login(web, user, clock)
        user_service.disable_user(loaded.uow(TEST_ACTOR), user.email, "left the study", clock())
        assert web.get("/ui/", follow_redirects=False).status_code == 303


class TestCsrf:
    def test_a_post_without_the_token_changes_nothing(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        form = {
            "subject_id": "CSRF-1",
            "site": "FR01",
            "stratum_shock": "yes",
            "stratum_age": "lt65",
        }
        for token in (None, "forged"):
            data = form if token is None else {**form, "csrf_token": token}
            response = web.post(f"/ui/studies/{STUDY}/subjects/new", data=data)
            assert response.status_code == 403
            assert "nothing was done" in response.text
        with loaded.uow(TEST_ACTOR) as uow:
            assert uow.subjects.get(STUDY, "CSRF-1") is None

    def test_the_login_form_needs_its_cookie(
        self, web: TestClient, person: Callable[..., Person]
    ) -> None:
        user = person(Role.AUDITOR)
        page = web.get("/ui/login")
        web.cookies.delete("iwrs_form")
        response = web.post(
            "/ui/login",
            data={"csrf_token": csrf(page.text), "email": user.email, "password": user.password},
            follow_redirects=False,
        )
        assert response.status_code == 403


class TestEnrolment:
    def test_code_password_then_totp(
        self, web: TestClient, loaded: Container, clock: FakeClock
    ) -> None:
        issued = user_service.create_user(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            email="Nouvelle@CHU.example.fr",
            role=Role.INVESTIGATOR,
            studies=[STUDY],
            sites=["FR02"],
            now=clock(),
        )
        page = web.get("/ui/enrol")
        form = {
            "csrf_token": csrf(page.text),
            "email": "nouvelle@chu.example.fr",
            "enrolment_code": issued.code.lower(),
            "password": "short",
            "password_again": "short",
        }
        weak = web.post("/ui/enrol", data=form)
        assert weak.status_code == 400
        assert "12 characters" in weak.text
        strong = "une phrase assez longue"
        response = web.post(
            "/ui/enrol", data={**form, "password": strong, "password_again": strong}
        )
        assert response.status_code == 200
        assert "authenticator" in response.text
        secret = response.text.split('id="totp-secret">')[1].split("<")[0].replace(" ", "")
        clock.advance(seconds=30)
        done = web.post(
            "/ui/enrol/totp",
            data={"csrf_token": csrf(response.text), "code": pyotp.TOTP(secret).at(clock())},
        )
        assert done.status_code == 200
        assert "nouvelle@chu.example.fr" in done.text
        assert {"user.enrolled", "auth.login"} <= set(actions(loaded))
        # The enrolment code was used up.
        web.cookies.clear()
        page = web.get("/ui/enrol")
        again = web.post(
            "/ui/enrol",
            data={
                **form,
                "csrf_token": csrf(page.text),
                "password": strong,
                "password_again": strong,
            },
        )
        assert again.status_code == 401

    def test_reset_forgets_both_factors(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        user = person(Role.AUDITOR)
        issued = user_service.reset_user(
            loaded.uow(TEST_ACTOR), loaded.hasher, user.email, "lost phone", clock()
        )
        assert issued.code
        assert post_login(web, user.email, user.password) == 401


class TestConfirmFactors:
    def test_a_lock_while_confirming_ends_the_sessions(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        login(web, investigator, clock)
        form = web.get(f"/ui/studies/{STUDY}/unblinding")
        data = {
            "csrf_token": csrf(form.text),
            "subject_id": "X-1",
            "reason": "test",
            "password": "not the password",
            "code": "123456",
        }
        for _ in range(MAX_FAILURES):
            refused = web.post(f"/ui/studies/{STUDY}/unblinding", data=data)
            assert refused.status_code == 401
        assert "auth.user_locked" in actions(loaded)
        assert web.get("/ui/", follow_redirects=False).status_code == 303


def _pages_open_with(client: TestClient, token: str) -> bool:
    """Whether the home page opens for a browser holding only this session cookie."""
    client.cookies.clear()
    client.cookies.set("iwrs_session", token)
    return client.get("/ui/", follow_redirects=False).status_code == 200


class TestSessionRenewal:
    """A privilege change issues a new session token and ends the old one (no fixation)."""

    def test_the_second_factor_issues_a_new_token_and_ends_the_pending_one(
        self,
        web: TestClient,
        person: Callable[..., Person],
        clock: FakeClock,
        loaded: Container,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        assert post_login(web, investigator.email, investigator.password) == 303
        pending = web.cookies.get("iwrs_session")
        assert pending
        page = web.get("/ui/login/code")
        response = web.post(
            "/ui/login/code",
            data={"csrf_token": csrf(page.text), "code": investigator.code(clock)},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert "iwrs_session=" in response.headers["set-cookie"]
        active = web.cookies.get("iwrs_session")
        assert active
        assert active != pending
        # Whoever held (or planted) the pending token gets nothing from the second factor.
        assert not _pages_open_with(web, pending)
        assert web.get("/ui/login/code", follow_redirects=False).status_code == 303
        assert _pages_open_with(web, active)
        with loaded.uow(TEST_ACTOR) as uow:
            ended = uow.web_sessions.get(user_service.token_hash(pending))
        assert ended is not None
        assert ended.ended_at is not None
        assert actions(loaded).count("auth.login") >= 1

    def test_completing_enrolment_issues_a_new_token_and_ends_the_enrolling_one(
        self, web: TestClient, loaded: Container, clock: FakeClock
    ) -> None:
        issued = user_service.create_user(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            email="renouvelee@chu.example.fr",
            role=Role.INVESTIGATOR,
            studies=[STUDY],
            sites=["FR01"],
            now=clock(),
        )
        page = web.get("/ui/enrol")
        strong = "une phrase assez longue"
        response = web.post(
            "/ui/enrol",
            data={
                "csrf_token": csrf(page.text),
                "email": "renouvelee@chu.example.fr",
                "enrolment_code": issued.code,
                "password": strong,
                "password_again": strong,
            },
        )
        assert response.status_code == 200
        enrolling = web.cookies.get("iwrs_session")
        assert enrolling
        secret = response.text.split('id="totp-secret">')[1].split("<")[0].replace(" ", "")
        clock.advance(seconds=30)
        done = web.post(
            "/ui/enrol/totp",
            data={"csrf_token": csrf(response.text), "code": pyotp.TOTP(secret).at(clock())},
            follow_redirects=False,
        )
        assert done.status_code == 303
        active = web.cookies.get("iwrs_session")
        assert active
        assert active != enrolling
        assert not _pages_open_with(web, enrolling)
        assert web.get("/ui/enrol/totp", follow_redirects=False).status_code == 303
        assert _pages_open_with(web, active)

    def test_setting_a_password_ends_an_interrupted_enrolment(
        self, web: TestClient, loaded: Container, clock: FakeClock
    ) -> None:
        issued = user_service.create_user(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            email="deux.fois@chu.example.fr",
            role=Role.AUDITOR,
            studies=[STUDY],
            sites=[],
            now=clock(),
        )
        factor = user_service_factor()
        first = user_service.begin_enrolment(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            factor,
            email="deux.fois@chu.example.fr",
            code=issued.code,
            password="une phrase assez longue",
            now=clock(),
        )
        user_service.begin_enrolment(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            factor,
            email="deux.fois@chu.example.fr",
            code=issued.code,
            password="une autre phrase assez longue",
            now=clock(),
        )
        with loaded.uow(TEST_ACTOR) as uow:
            earlier = uow.web_sessions.get(first.session.session.token_hash)
        assert earlier is not None
        assert earlier.ended_at is not None
        web.cookies.set("iwrs_session", first.session.token)
        assert web.get("/ui/enrol/totp", follow_redirects=False).status_code == 303
