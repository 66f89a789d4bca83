from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.roles import Role
from app.services.clients import IssuedSecret, create_client
from app.services.studies import load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR

MakeClient = Callable[..., IssuedSecret]
Login = Callable[..., dict[str, str]]


@pytest.fixture
def loaded(container: Container) -> Container:
    """The container with both example studies loaded."""
    for name in ("iris-7a", "iris-7b"):
        study, document, sha = read_study_file(STUDIES_DIR / f"{name}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
    return container


@pytest.fixture
def client(loaded: Container) -> Iterator[TestClient]:
    with TestClient(create_app(loaded), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_client(loaded: Container) -> MakeClient:
    counter = iter(range(1, 10_000))

    def make(
        role: Role | str,
        studies: Sequence[str] = ("iris-7a",),
        sites: Sequence[str] = (),
        name: str | None = None,
    ) -> IssuedSecret:
        role = Role(role)
        if role.site_scoped and not sites:
            sites = ["FR01"] if "iris-7a" in studies else ["US01"]
        return create_client(
            loaded.uow(TEST_ACTOR),
            loaded.hasher,
            name=name or f"{role.value}-{next(counter)}",
            role=role,
            studies=[] if role is Role.ADMIN else list(studies),
            sites=list(sites),
        )

    return make


@pytest.fixture
def login(client: TestClient, make_client: MakeClient) -> Login:
    """Create a client and return the Authorization header of a fresh token for it."""

    def do(role: Role | str, **kwargs: object) -> dict[str, str]:
        issued = make_client(role, **kwargs)
        response = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": issued.client.client_id,
                "client_secret": issued.secret,
            },
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return do
