"""Every /api/v1 endpoint, every role, own and foreign study: the expected answer of each.

A new endpoint without a row here, or without a permission rule, fails this suite.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.api.introspect import RouteInfo, api_routes
from app.bootstrap import Container
from app.domain.access import PERMISSIONS, Action
from app.domain.roles import Role
from tests.api.conftest import Login

OWN, FOREIGN = "iris-7a", "iris-7b"
PUBLIC = {
    "/health",
    "/ready",
    "/oauth/token",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}

# (method, route path) -> (concrete path for a study, expected status for (role, own?)).
Expect = Callable[[Role, bool], int]


def study_scoped(action: Action) -> Expect:
    """Allowed roles get 200 in their studies, 404 elsewhere (admins see every study);
    others get 403."""

    def expect(role: Role, own: bool) -> int:
        if action not in PERMISSIONS[role]:
            return 403
        return 200 if own or role is Role.ADMIN else 404

    return expect


ENDPOINTS: dict[tuple[str, str], tuple[str, Expect]] = {
    ("GET", "/api/v1/studies"): ("/api/v1/studies", lambda role, own: 200),
    ("GET", "/api/v1/studies/{study}"): (
        "/api/v1/studies/{study}",
        study_scoped(Action.STUDY_READ),
    ),
    ("GET", "/api/v1/studies/{study}/audit"): (
        "/api/v1/studies/{study}/audit",
        study_scoped(Action.AUDIT_READ),
    ),
}


def _api_routes(container: Container) -> list[RouteInfo]:
    routes = list(api_routes(create_app(container)))
    assert len(routes) >= len(ENDPOINTS), "route discovery found too few routes"
    return routes


class TestEveryEndpointHasARule:
    def test_every_api_route_is_in_the_table_and_has_an_action(self, loaded: Container) -> None:
        seen = set()
        for route in _api_routes(loaded):
            if route.path in PUBLIC:
                continue
            seen.add((route.method, route.path))
            assert (route.method, route.path) in ENDPOINTS, f"no expectation for {route}"
            assert route.action is not None, f"{route.path} has no permission rule"
        assert seen == set(ENDPOINTS), f"table rows without a route: {set(ENDPOINTS) - seen}"

    def test_nothing_but_public_paths_answers_without_a_token(
        self, client: TestClient, loaded: Container
    ) -> None:
        for route in _api_routes(loaded):
            if route.path in PUBLIC:
                continue
            path = route.path.replace("{study}", OWN)
            response = client.request(route.method, path)
            assert response.status_code == 401, f"{route}: {response.status_code}"

    def test_openapi_names_the_allowed_roles(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        audit = spec["paths"]["/api/v1/studies/{study}/audit"]["get"]
        assert audit["x-iwrs-roles"] == ["admin", "auditor"]


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_matrix(role: Role, client: TestClient, login: Login) -> None:
    headers = login(role, studies=[OWN])
    failures = []
    for (method, _route), (template, expect) in ENDPOINTS.items():
        for own in (True, False):
            path = template.replace("{study}", OWN if own else FOREIGN)
            got = client.request(method, path, headers=headers).status_code
            want = expect(role, own)
            if got != want:
                failures.append(f"{role.value} {method} {path}: got {got}, want {want}")
    assert not failures, "\n".join(failures)


def test_study_list_shows_only_granted_studies(client: TestClient, login: Login) -> None:
    edc = client.get("/api/v1/studies", headers=login("edc", studies=[FOREIGN])).json()
    assert [s["slug"] for s in edc["studies"]] == [FOREIGN]
    both = client.get(
        "/api/v1/studies", headers=login("unblinded_statistician", studies=[OWN, FOREIGN])
    )
    assert [s["slug"] for s in both.json()["studies"]] == [OWN, FOREIGN]
    admin = client.get("/api/v1/studies", headers=login("admin")).json()
    assert [s["slug"] for s in admin["studies"]] == [OWN, FOREIGN]
