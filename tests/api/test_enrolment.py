"""Enrolment control over the API: caps (warning threshold, hard cap) by study, country,
site and stratum; closing and reopening a site's enrolment apart from its activation; site
activation with its initial shipment; the enrolment status. Audited, blinded, idempotent."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.adapters.db.models import OutboxRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.domain.enrolment import ReasonRequired
from app.domain.roles import Role
from app.services import enrolment, resupply
from app.services.randomization import generate_list
from app.services.studies import load_study
from tests.api.conftest import Login
from tests.api.test_supply import (
    API,
    STRATA,
    assert_blind,
    audit_text,
    dispense_url,
    generate,
    lose,
    randomized,
    receive,
    registered,
)
from tests.conftest import STUDIES_DIR, TEST_ACTOR

MANAGERS = {Role.SUPPLY_MANAGER, Role.ADMIN}
OTHER = {"shock": "no", "age": "ge65"}


@pytest.fixture
def kitted(loaded: Container) -> Container:
    """Both studies loaded, iris-7a's list and kits generated, FR01's initial shipment
    received."""
    generate_list(loaded.uow(TEST_ACTOR), "test", "iris-7a")
    generate(loaded)
    receive(loaded, "FR01")
    return loaded


def set_cap(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"{API}/enrolment/caps", json=body, headers=headers)


def randomize(client: TestClient, subject_id: str, headers: dict[str, str]) -> Any:
    return client.post(f"{API}/subjects/{subject_id}/randomization", json={}, headers=headers)


def register(
    client: TestClient, subject_id: str, headers: dict[str, str], strata: dict[str, str] = STRATA
) -> None:
    response = client.post(
        f"{API}/subjects",
        json={"subject_id": subject_id, "site_id": "FR01", "strata": strata},
        headers=headers,
    )
    assert response.status_code == 201, response.text


def status_of(client: TestClient, subject_id: str, headers: dict[str, str]) -> str:
    return str(client.get(f"{API}/subjects/{subject_id}", headers=headers).json()["status"])


def problem(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def outbox(container: Container, kind: str) -> list[dict[str, Any]]:
    with container.session_factory() as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.kind == kind)).all()
        return [dict(r.payload) for r in rows]


def actions(container: Container) -> list[str]:
    return [e["action"] for e in json.loads(audit_text(container))]


class TestCaps:
    def test_a_site_cap_refuses_past_it_and_warns_once(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        manager, edc = login("supply_manager"), login("edc")
        response = set_cap(client, manager, scope="site", target="FR01", warning_at=2, cap=3)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "open"
        for n in range(1, 5):
            register(client, f"C-{n}", edc)
        for n in range(1, 4):
            assert randomize(client, f"C-{n}", edc).status_code == 201

        refused = randomize(client, "C-4", edc)

        assert problem(refused) == (409, "enrolment_cap_reached")
        assert status_of(client, "C-4", edc) == "registered"
        warnings = outbox(kitted, "enrolment.cap_warning")
        assert warnings == [
            {"scope": "site", "target": "FR01", "warning_at": 2, "cap": 3, "randomized": 2}
        ]
        done = actions(kitted)
        assert done.count("enrolment.cap_warning") == 1
        assert done.count("enrolment.refused") == 1
        assert done.count("enrolment.cap_set") == 1
        assert_blind(refused.json())
        assert_blind(audit_text(kitted))

    def test_a_stratum_cap_counts_the_levels_at_every_site(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        manager, edc = login("admin"), login("edc")
        response = set_cap(client, manager, scope="stratum", target="age=lt65|shock=yes", cap=1)
        assert response.status_code == 200, response.text
        assert response.json()["target"] == "shock=yes|age=lt65"  # the study's factor order
        register(client, "T-1", edc)
        register(client, "T-2", edc, OTHER)
        register(client, "T-3", edc)

        assert randomize(client, "T-1", edc).status_code == 201
        assert randomize(client, "T-2", edc).status_code == 201  # another stratum
        assert problem(randomize(client, "T-3", edc)) == (409, "enrolment_cap_reached")

    def test_ended_subjects_count_and_the_never_randomized_do_not(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        edc = login("edc")
        randomized(kitted, "E-1")
        ended = client.post(f"{API}/subjects/E-1/completion", headers=edc)
        assert ended.status_code == 200, ended.text
        registered(kitted, "E-2")  # never randomized: not counted
        set_cap(client, login("supply_manager"), scope="study", cap=2)
        register(client, "E-3", edc)
        register(client, "E-4", edc)

        assert randomize(client, "E-3", edc).status_code == 201
        assert problem(randomize(client, "E-4", edc)) == (409, "enrolment_cap_reached")

    def test_a_country_cap(self, client: TestClient, kitted: Container, login: Login) -> None:
        randomized(kitted, "K-1")
        response = set_cap(client, login("supply_manager"), scope="country", target="fr", cap=1)
        assert response.status_code == 200, response.text
        assert (response.json()["target"], response.json()["state"]) == ("FR", "reached")
        edc = login("edc")
        register(client, "K-2", edc)
        assert problem(randomize(client, "K-2", edc)) == (409, "enrolment_cap_reached")

    @pytest.mark.parametrize(
        "body",
        [
            {"scope": "site", "target": "ZZ99", "cap": 3},
            {"scope": "site", "target": "FR01", "warning_at": 5, "cap": 3},
            {"scope": "site", "target": "FR01", "cap": 0},
            {"scope": "study", "target": "FR01", "cap": 3},
            {"scope": "country", "target": "US", "cap": 3},
            {"scope": "stratum", "target": "shock=yes", "cap": 3},
            {"scope": "stratum", "target": "shock=maybe|age=lt65", "cap": 3},
        ],
    )
    def test_bad_caps_are_refused(
        self, client: TestClient, kitted: Container, login: Login, body: dict[str, Any]
    ) -> None:
        response = set_cap(client, login("supply_manager"), **body)
        assert problem(response) == (422, "invalid_enrolment_cap")
        assert "enrolment.cap_set" not in actions(kitted)

    def test_unknown_scope_and_extra_fields_are_validation_errors(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        manager = login("supply_manager")
        assert problem(set_cap(client, manager, scope="planet", cap=3)) == (
            422,
            "validation_error",
        )
        assert problem(set_cap(client, manager, scope="study", cap=3, arm="PLACEBO"))[0] == 422

    def test_clearing(self, client: TestClient, kitted: Container, login: Login) -> None:
        manager = login("supply_manager")
        set_cap(client, manager, scope="site", target="FR01", cap=1)
        cleared = set_cap(client, manager, scope="site", target="FR01")
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["state"] == "cleared"
        again = set_cap(client, manager, scope="site", target="FR01")
        assert problem(again) == (404, "enrolment_cap_not_found")
        assert "enrolment.cap_cleared" in actions(kitted)

    def test_scope_and_roles(self, client: TestClient, loaded: Container, login: Login) -> None:
        body = {"scope": "site", "target": "FR01", "cap": 3}
        assert set_cap(client, login("investigator"), **body).status_code == 403
        foreign = login("supply_manager", studies=["iris-7b"])
        assert problem(set_cap(client, foreign, **body)) == (404, "study_not_found")

    def test_idempotent(self, client: TestClient, loaded: Container, login: Login) -> None:
        manager = {**login("supply_manager"), "Idempotency-Key": "cap-1"}
        body = {"scope": "site", "target": "FR01", "warning_at": 2, "cap": 3}
        first = set_cap(client, manager, **body)
        second = set_cap(client, manager, **body)
        assert (first.status_code, first.json()) == (second.status_code, second.json())
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert actions(loaded).count("enrolment.cap_set") == 1
        other = set_cap(client, manager, **{**body, "cap": 4})
        assert problem(other) == (422, "idempotency_key_reused")


class TestSiteEnrolment:
    def close(self, client: TestClient, headers: dict[str, str], site: str = "FR01") -> Any:
        return client.post(
            f"{API}/sites/{site}/enrolment-closure", json={"reason": "target met"}, headers=headers
        )

    def test_a_closed_site_refuses_randomization_and_keeps_dispensing(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "D-1", days_ago=3)
        manager, edc = login("supply_manager"), login("edc")
        register(client, "D-2", edc)

        closed = self.close(client, manager)

        assert closed.status_code == 200, closed.text
        assert closed.json()["enrolment_open"] is False
        assert closed.json()["active"] is True
        assert problem(randomize(client, "D-2", edc)) == (409, "site_enrolment_closed")
        assert status_of(client, "D-2", edc) == "registered"
        dispensed = client.post(
            dispense_url("D-1"), json={"visit": "D4", "weight_kg": 70}, headers=edc
        )
        assert dispensed.status_code == 201, dispensed.text
        reopened = client.post(
            f"{API}/sites/FR01/enrolment-reopening", json={"reason": "more needed"}, headers=manager
        )
        assert reopened.json()["enrolment_open"] is True
        assert randomize(client, "D-2", edc).status_code == 201
        done = actions(kitted)
        assert "site.enrolment_closed" in done
        assert "site.enrolment_reopened" in done
        assert "enrolment.refused" in done

    def test_the_daily_review_still_resupplies_a_closed_site(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "R-1", days_ago=3, weight="50")
        for kit_type in ("KT_IL7", "KT_PBO"):
            lose(kitted, kit_type, keep=4)
        assert self.close(client, login("admin")).status_code == 200

        shipped = resupply.daily_review(kitted.uow(TEST_ACTOR), "iris-7a")

        assert shipped is not None
        assert "FR01" in [s.site for s in shipped]

    def test_reason_required_and_twice_refused(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        manager = login("supply_manager")
        no_reason = client.post(f"{API}/sites/FR01/enrolment-closure", json={}, headers=manager)
        assert problem(no_reason) == (422, "validation_error")
        with pytest.raises(ReasonRequired):
            enrolment.set_site_enrolment(
                kitted.uow(TEST_ACTOR), None, "iris-7a", "FR01", False, " "
            )
        assert self.close(client, manager).status_code == 200
        assert problem(self.close(client, manager)) == (409, "site_enrolment_already_closed")
        reopen = client.post(
            f"{API}/sites/FR02/enrolment-reopening", json={"reason": "x"}, headers=manager
        )
        assert problem(reopen) == (409, "site_enrolment_already_open")
        assert problem(self.close(client, manager, "FR99")) == (404, "site_not_found")
        assert self.close(client, login("investigator")).status_code == 403


class TestActivation:
    def activate(self, client: TestClient, headers: dict[str, str], site: str = "FR04") -> Any:
        return client.post(f"{API}/sites/{site}/activation", headers=headers)

    def test_activation_sends_the_initial_shipment(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        manager = login("supply_manager")

        response = self.activate(client, manager)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["active"] is True
        assert body["initial_shipment"]["shipment_id"] == "SH-FR04-001"
        assert body["initial_shipment"]["kit_count"] == 32
        sites = client.get(API, headers=manager).json()["sites"]
        assert [s["active"] for s in sites if s["code"] == "FR04"] == [True]
        register_fr04 = client.post(
            f"{API}/subjects",
            json={"subject_id": "A-1", "site_id": "FR04", "strata": STRATA},
            headers=login("edc"),
        )
        assert register_fr04.status_code == 201, register_fr04.text
        assert problem(self.activate(client, manager)) == (409, "site_already_active")
        done = actions(kitted)
        assert "site.activated" in done
        assert "shipment.created" in done
        assert_blind(body)

    def test_before_the_kit_list_the_shipment_waits_for_it(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        response = self.activate(client, login("admin"))
        assert response.status_code == 200, response.text
        assert response.json()["initial_shipment"] is None
        assert "kit list" in response.json()["note"]
        shipments = generate(loaded).shipments
        assert [s.site for s in shipments] == ["FR01", "FR02", "FR03", "FR04"]

    def test_the_study_file_keeps_the_stored_activation(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        assert self.activate(client, login("admin")).status_code == 200
        study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")

        same = load_study(loaded.uow(TEST_ACTOR), study, document, sha)
        changed = load_study(
            loaded.uow(TEST_ACTOR),
            replace(study, title="IRIS-7A v2"),
            {**document, "title": "IRIS-7A v2"},
            "0" * 64,
        )

        assert not same.changed
        assert changed.changed
        assert changed.activation_kept == ("FR04",)
        sites = client.get(API, headers=login("edc")).json()["sites"]
        assert [s["active"] for s in sites if s["code"] == "FR04"] == [True]

    def test_deactivation_needs_a_reason_and_stops_randomization(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        manager, edc = login("supply_manager"), login("edc")
        register(client, "X-1", edc)
        no_reason = client.post(f"{API}/sites/FR01/deactivation", json={}, headers=manager)
        assert problem(no_reason) == (422, "validation_error")
        response = client.post(
            f"{API}/sites/FR01/deactivation", json={"reason": "closed down"}, headers=manager
        )
        assert response.status_code == 200, response.text
        assert response.json()["active"] is False
        assert problem(randomize(client, "X-1", edc)) == (409, "site_not_active")
        again = client.post(f"{API}/sites/FR01/deactivation", json={"reason": "x"}, headers=manager)
        assert problem(again) == (409, "site_not_active")

    def test_roles_and_scope(self, client: TestClient, loaded: Container, login: Login) -> None:
        assert self.activate(client, login("investigator")).status_code == 403
        assert self.activate(client, login("auditor")).status_code == 403
        foreign = login("supply_manager", studies=["iris-7b"])
        assert problem(self.activate(client, foreign)) == (404, "study_not_found")


class TestStatus:
    def test_counts_states_and_caps_blinded(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-1")
        randomized(kitted, "S-2", strata=OTHER)
        registered(kitted, "S-3")
        manager = login("supply_manager")
        set_cap(client, manager, scope="site", target="FR01", warning_at=2, cap=10)
        client.post(f"{API}/sites/FR02/enrolment-closure", json={"reason": "x"}, headers=manager)

        response = client.get(f"{API}/enrolment", headers=login("auditor"))

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["randomized"] == 2
        assert body["by_country"] == {"FR": 2}
        assert body["by_stratum"] == {"shock=no|age=ge65": 1, "shock=yes|age=lt65": 1}
        sites = {s["site_id"]: s for s in body["sites"]}
        assert sites["FR01"]["randomized"] == 2
        assert sites["FR02"]["enrolment_open"] is False
        assert sites["FR04"]["active"] is False
        (cap,) = body["caps"]
        assert (cap["randomized"], cap["state"]) == (2, "warning")
        assert_blind(body)

    def test_roles_and_scope(self, client: TestClient, loaded: Container, login: Login) -> None:
        assert client.get(f"{API}/enrolment", headers=login("investigator")).status_code == 403
        assert client.get(f"{API}/enrolment", headers=login("edc")).status_code == 403
        foreign = client.get(f"{API}/enrolment", headers=login("auditor", studies=["iris-7b"]))
        assert problem(foreign) == (404, "study_not_found")


def _expect(roles: set[Role], ok: int) -> Any:
    def expect(role: Role, own: bool) -> int:
        if role not in roles:
            return 403
        return ok if own or role is Role.ADMIN else 404

    return expect


# Rows of the authorization matrix (tests/api/test_authorization_matrix.py). Bodies are left
# out, so an allowed caller is told what is missing (422) unless the body is optional.
MATRIX_ROWS: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/api/v1/studies/{study}/enrolment"): (
        "/api/v1/studies/{study}/enrolment",
        _expect({Role.SUPPLY_MANAGER, Role.ADMIN, Role.AUDITOR}, 200),
    ),
    ("POST", "/api/v1/studies/{study}/enrolment/caps"): (
        "/api/v1/studies/{study}/enrolment/caps",
        lambda role, own: 422 if role in MANAGERS else 403,
    ),
    ("POST", "/api/v1/studies/{study}/sites/{site_id}/enrolment-closure"): (
        "/api/v1/studies/{study}/sites/FR01/enrolment-closure",
        lambda role, own: 422 if role in MANAGERS else 403,
    ),
    ("POST", "/api/v1/studies/{study}/sites/{site_id}/enrolment-reopening"): (
        "/api/v1/studies/{study}/sites/FR01/enrolment-reopening",
        lambda role, own: 422 if role in MANAGERS else 403,
    ),
    # FR01 is active already (409); iris-7b has no site FR01 (404, admins too).
    ("POST", "/api/v1/studies/{study}/sites/{site_id}/activation"): (
        "/api/v1/studies/{study}/sites/FR01/activation",
        lambda role, own: 403 if role not in MANAGERS else (409 if own else 404),
    ),
    ("POST", "/api/v1/studies/{study}/sites/{site_id}/deactivation"): (
        "/api/v1/studies/{study}/sites/FR01/deactivation",
        lambda role, own: 422 if role in MANAGERS else 403,
    ),
}
