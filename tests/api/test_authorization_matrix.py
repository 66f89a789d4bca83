"""Every /api/v1 endpoint, every role, own and foreign study: the expected answer of each.

A new endpoint without a row here, or without a permission rule, fails this suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.api.introspect import RouteInfo, api_routes
from app.bootstrap import Container
from app.domain.access import PERMISSIONS, Action
from app.domain.roles import Role
from tests.api.conftest import Login
from tests.api.test_enrolment import MATRIX_ROWS as ENROLMENT_ROWS
from tests.api.test_supply import MATRIX_ROWS as SUPPLY_ROWS

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

# (method, route path) -> Case: the concrete path ({study}, {subject}, {site} filled in for
# the own or the foreign study), a JSON body maker, and the expected status for (role, own?).
Expect = Callable[[Role, bool], int]
Body = Callable[[bool], Any]


class Case(NamedTuple):
    path: str
    expect: Expect
    body: Body | None = None


def study_scoped(action: Action, ok: int = 200) -> Expect:
    """Allowed roles get `ok` in their studies, 404 elsewhere (admins see every study);
    others get 403."""

    def expect(role: Role, own: bool) -> int:
        if action not in PERMISSIONS[role]:
            return 403
        return ok if own or role is Role.ADMIN else 404

    return expect


# Records the matrix acts on, per study: a registered subject at the granted site.
PLACES = {
    True: {"study": OWN, "site": "FR01", "subject": "M-OWN"},
    False: {"study": FOREIGN, "site": "US01", "subject": "M-FOREIGN"},
}
STRATA = {"shock": "yes", "age": "lt65"}


ENDPOINTS: dict[tuple[str, str], tuple[str, Expect] | Case] = {
    ("GET", "/api/v1/studies"): ("/api/v1/studies", lambda role, own: 200),
    ("GET", "/api/v1/studies/{study}"): (
        "/api/v1/studies/{study}",
        study_scoped(Action.STUDY_READ),
    ),
    ("GET", "/api/v1/studies/{study}/audit"): (
        "/api/v1/studies/{study}/audit",
        study_scoped(Action.AUDIT_READ),
    ),
    ("POST", "/api/v1/studies/{study}/subjects"): Case(
        "/api/v1/studies/{study}/subjects",
        study_scoped(Action.SUBJECT_REGISTER, 201),
        lambda own: {"subject_id": "M-NEW", "site_id": PLACES[own]["site"], "strata": STRATA},
    ),
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/randomization"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/randomization",
        study_scoped(Action.SUBJECT_RANDOMIZE, 201),
        lambda own: {},
    ),
    # After the randomization above: the subject ends once, so the completion conflicts.
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/discontinuation"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/discontinuation",
        study_scoped(Action.SUBJECT_END),
        lambda own: {"reason": "death"},
    ),
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/completion"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/completion",
        study_scoped(Action.SUBJECT_END, 409),
    ),
    # The subject was randomized and has ended: no screen failure (409), but its stratum
    # can still be corrected.
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/screen-failure"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/screen-failure",
        study_scoped(Action.SUBJECT_END, 409),
        lambda own: {"reason": "death"},
    ),
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/stratum-correction"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/stratum-correction",
        study_scoped(Action.SUBJECT_REGISTER),
        lambda own: {"factor": "shock", "level": "no", "reason": "matrix"},
    ),
    ("GET", "/api/v1/studies/{study}/subjects/{subject_id}"): (
        "/api/v1/studies/{study}/subjects/{subject}",
        study_scoped(Action.SUBJECT_READ),
    ),
    ("POST", "/api/v1/studies/{study}/randomization-list"): Case(
        "/api/v1/studies/{study}/randomization-list",
        # The lists exist and are unused, so the statistician regenerates them.
        study_scoped(Action.LIST_GENERATE, 201),
        lambda own: None,
    ),
    ("GET", "/api/v1/studies/{study}/randomization-list/qc"): (
        "/api/v1/studies/{study}/randomization-list/qc",
        study_scoped(Action.LIST_READ),
    ),
    ("POST", "/api/v1/studies/{study}/randomization-list/upload"): Case(
        "/api/v1/studies/{study}/randomization-list/upload",
        # The example studies generate their lists: an allowed caller is told so (409).
        study_scoped(Action.LIST_GENERATE, 409),
        lambda own: "stratum,sequence,randomization_number,arm,block\n",
    ),
    ("POST", "/api/v1/studies/{study}/randomization-list/strata/{stratum}/extension"): Case(
        "/api/v1/studies/{study}/randomization-list/strata/{site}|shock=yes|age=lt65/extension",
        study_scoped(Action.LIST_GENERATE, 201),
        lambda own: {"slots": 3, "reason": "matrix"},
    ),
    # Blinding. Unblinding without a reason: an allowed role passes the role and freshness
    # checks and is told the reason is missing (422).
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/unblinding"): Case(
        "/api/v1/studies/{study}/subjects/{subject}/unblinding",
        study_scoped(Action.UNBLIND, 422),
        lambda own: None,
    ),
    ("GET", "/api/v1/studies/{study}/randomization-list"): (
        "/api/v1/studies/{study}/randomization-list",
        study_scoped(Action.LIST_READ),
    ),
    ("GET", "/api/v1/studies/{study}/randomization-list.csv"): (
        "/api/v1/studies/{study}/randomization-list.csv",
        study_scoped(Action.LIST_READ),
    ),
    ("GET", "/api/v1/pooled/allocations"): (
        "/api/v1/pooled/allocations?studies={study}",
        study_scoped(Action.POOLED_EXPORT),
    ),
    # Investigators only (their own site), and only once the study is locked (409 before).
    ("GET", "/api/v1/studies/{study}/subjects/{subject_id}/arm"): (
        "/api/v1/studies/{study}/subjects/{subject}/arm",
        lambda role, own: 403 if role is not Role.INVESTIGATOR else (409 if own else 404),
    ),
    # Last: it locks the study for the rest of the role's run.
    ("POST", "/api/v1/studies/{study}/lock"): Case(
        "/api/v1/studies/{study}/lock",
        study_scoped(Action.STUDY_LOCK),
        lambda own: {"reason": "matrix"},
    ),
}

ENDPOINTS.update(SUPPLY_ROWS)
ENDPOINTS.update(ENROLMENT_ROWS)
# Visits (tests/api/test_visits.py): the matrix subject is never on treatment when these
# run (discontinued, or registered only for roles that do not randomize), so 409.
ENDPOINTS.update(
    {
        ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/visits/{visit}/missed"): Case(
            "/api/v1/studies/{study}/subjects/{subject}/visits/D4/missed",
            study_scoped(Action.VISIT_RECORD, 409),
            lambda own: {"reason": "matrix"},
        ),
        ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/visits/{visit}/held"): Case(
            "/api/v1/studies/{study}/subjects/{subject}/visits/D4/held",
            study_scoped(Action.VISIT_RECORD, 409),
            lambda own: {"reason": "matrix"},
        ),
        ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/unscheduled-dispensations"): Case(
            "/api/v1/studies/{study}/subjects/{subject}/unscheduled-dispensations",
            study_scoped(Action.DISPENSE, 409),
            lambda own: {"reason": "matrix", "weight_kg": 70},
        ),
        ("GET", "/api/v1/studies/{study}/sites/{site_id}/due"): (
            "/api/v1/studies/{study}/sites/{site}/due",
            study_scoped(Action.SUBJECT_READ),
        ),
    }
)


@pytest.fixture
def trial(loaded: Container, monkeypatch: pytest.MonkeyPatch) -> Container:
    """Lists for both studies and a registered subject at one site of each."""
    from app.domain.access import Principal
    from app.services import randomization as rnd
    from app.services import supply
    from tests.conftest import TEST_ACTOR

    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
    edc = Principal("matrix", Role.EDC, frozenset({OWN, FOREIGN}))
    for place in PLACES.values():
        rnd.generate_list(loaded.uow(TEST_ACTOR), "matrix", place["study"])
        rnd.register_subject(
            loaded.uow(TEST_ACTOR), edc, place["study"], place["subject"], place["site"], STRATA
        )
    return loaded


def _request(
    client: TestClient, method: str, case: Case, own: bool, headers: dict[str, str]
) -> int:
    place = PLACES[own]
    path = case.path.format(**place)
    body = case.body(own) if case.body is not None else None
    if isinstance(body, str):
        response = client.request(
            method, path, content=body, headers={**headers, "Content-Type": "text/csv"}
        )
    elif body is not None:
        response = client.request(method, path, json=body, headers=headers)
    else:
        response = client.request(method, path, headers=headers)
    return response.status_code


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
            path = route.path.replace("{study}", OWN).replace("{subject_id}", "x")
            path = path.replace("{stratum}", "x").replace("{site_id}", "FR01")
            path = path.replace("{kit_number}", "1").replace("{shipment_id}", "1")
            response = client.request(route.method, path)
            assert response.status_code == 401, f"{route}: {response.status_code}"

    def test_openapi_names_the_allowed_roles(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        audit = spec["paths"]["/api/v1/studies/{study}/audit"]["get"]
        assert audit["x-iwrs-roles"] == ["admin", "auditor"]


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_matrix(role: Role, trial: Container, client: TestClient, login: Login) -> None:
    headers = login(role, studies=[OWN])
    failures = []
    for (method, _route), row in ENDPOINTS.items():
        case = row if isinstance(row, Case) else Case(*row)
        for own in (True, False):
            got = _request(client, method, case, own, headers)
            want = case.expect(role, own)
            if got != want:
                failures.append(
                    f"{role.value} {method} {case.path} own={own}: got {got}, want {want}"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", [Role.INVESTIGATOR, Role.PHARMACIST], ids=lambda r: r.value)
def test_site_roles_do_not_see_other_sites(
    role: Role, trial: Container, client: TestClient, login: Login
) -> None:
    headers = login(role, studies=[OWN], sites=["FR02"])
    subject = client.get(f"/api/v1/studies/{OWN}/subjects/M-OWN", headers=headers)
    assert subject.status_code == 404
    assert subject.json()["code"] == "subject_not_found"
    if role is Role.INVESTIGATOR:
        elsewhere = client.post(
            f"/api/v1/studies/{OWN}/subjects",
            json={"subject_id": "M-X", "site_id": "FR01", "strata": STRATA},
            headers=headers,
        )
        assert elsewhere.status_code == 403
        randomized = client.post(
            f"/api/v1/studies/{OWN}/subjects/M-OWN/randomization", json={}, headers=headers
        )
        assert randomized.status_code == 404
        ended = client.post(f"/api/v1/studies/{OWN}/subjects/M-OWN/completion", headers=headers)
        assert ended.status_code == 404


def test_study_list_shows_only_granted_studies(client: TestClient, login: Login) -> None:
    edc = client.get("/api/v1/studies", headers=login("edc", studies=[FOREIGN])).json()
    assert [s["slug"] for s in edc["studies"]] == [FOREIGN]
    both = client.get(
        "/api/v1/studies", headers=login("unblinded_statistician", studies=[OWN, FOREIGN])
    )
    assert [s["slug"] for s in both.json()["studies"]] == [OWN, FOREIGN]
    admin = client.get("/api/v1/studies", headers=login("admin")).json()
    assert [s["slug"] for s in admin["studies"]] == [OWN, FOREIGN]
