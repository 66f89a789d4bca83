"""Web page tests through Starlette's TestClient (https, so the Secure cookies travel), with
a clock the tests move (TOTP steps, idle timeout) and people enrolled through the use cases."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services import users as user_service
from app.services.studies import load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR

BASE_URL = "https://testserver"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class FakeClock:
    """The pages' clock; each TOTP code is drawn on a fresh 30-second step."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass(frozen=True)
class Person:
    email: str
    password: str
    secret: str
    role: Role

    def code(self, clock: FakeClock) -> str:
        """A code of the next time step (each code is accepted once)."""
        clock.advance(seconds=30)
        return pyotp.TOTP(self.secret).at(clock())


def csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


def enrol(
    container: Container,
    clock: Callable[[], datetime],
    role: Role,
    email: str,
    studies: Sequence[str] | None = None,
    sites: Sequence[str] = (),
    locale: str | None = None,
) -> Person:
    """Create a user and enrol them through the use cases (as the pages do); by default an
    admin holds every study, anyone else iris-7a."""
    if studies is None:
        studies = [] if role is Role.ADMIN else ["iris-7a"]
    if role.site_scoped and not sites:
        sites = ["FR01"]
    issued = user_service.create_user(
        container.uow(TEST_ACTOR),
        container.hasher,
        email=email,
        role=role,
        studies=list(studies),
        sites=list(sites),
        now=clock(),
        locale=locale,
    )
    factor = user_service_factor()
    enrolment = user_service.begin_enrolment(
        container.uow(TEST_ACTOR),
        container.hasher,
        factor,
        email=email,
        code=issued.code,
        password=PASSWORD,
        now=clock(),
    )
    user_service.complete_enrolment(
        container.uow(TEST_ACTOR),
        factor,
        enrolment.session.session.token_hash,
        pyotp.TOTP(enrolment.secret).at(clock()),
        clock(),
    )
    return Person(email, PASSWORD, enrolment.secret, role)


def user_service_factor() -> user_service.SecondFactor:
    from app.adapters.crypto.totp import Totp

    return Totp()


def login(client: TestClient, person: Person, clock: FakeClock) -> None:
    page = client.get("/ui/login")
    response = client.post(
        "/ui/login",
        data={"csrf_token": csrf(page.text), "email": person.email, "password": person.password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    response = client.post(
        "/ui/login/code",
        data={"csrf_token": csrf(page.text), "code": person.code(clock), "next": "/ui/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/"


@pytest.fixture
def loaded(container: Container) -> Container:
    """The container with both example studies loaded."""
    for name in ("iris-7a", "iris-7b"):
        study, document, sha = read_study_file(STUDIES_DIR / f"{name}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
    return container


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def web_app(loaded: Container, clock: FakeClock) -> FastAPI:
    app = create_app(loaded)
    app.state.web.clock = clock
    return app


@pytest.fixture
def web(web_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(web_app, base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def person(loaded: Container, clock: FakeClock) -> Callable[..., Person]:
    counter = iter(range(1, 1000))

    def make(role: Role | str, **kwargs: object) -> Person:
        role = Role(role)
        email = f"{role.value.replace('_', '.')}{next(counter)}@chu.example.fr"
        return enrol(loaded, clock, role, email, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def trial(loaded: Container) -> Container:
    """iris-7a with its list, its kits, and FR01's initial shipment received."""
    rnd.generate_list(loaded.uow(TEST_ACTOR), "web-tests", "iris-7a")
    supply.generate_kits(loaded.uow(TEST_ACTOR), "iris-7a")
    pharmacist = Principal(
        "web-tests", Role.PHARMACIST, frozenset({"iris-7a"}), {"iris-7a": frozenset({"FR01"})}
    )
    with loaded.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments("iris-7a", site="FR01")
    supply.receive_shipment(loaded.uow(TEST_ACTOR), pharmacist, "iris-7a", shipment.code)
    return loaded
