"""Emergency unblinding, the statistician's exports, the study lock and arms after it,
through the API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.adapters.db.audit import iter_chain
from app.adapters.db.models import IdempotencyRow, OutboxRow, UnblindingRow
from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.audit import AuditRecord
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study
from tests.api.conftest import Login, MakeClient
from tests.builders import set_path, study_document
from tests.conftest import TEST_ACTOR
from tests.integration.test_blind_leaks import ARM_SECRETS, leaked

A, B = "iris-7a", "iris-7b"
EDC = Principal("edc-setup", Role.EDC, frozenset({A, B}))
STRATA = {"shock": "yes", "age": "lt65"}
REASON = {"reason": "suspected SUSAR: anaphylaxis on day 4"}
PROBLEM = "application/problem+json"

# (study, subject, site, randomized?)
SUBJECTS = [
    (A, "A-1", "FR01", True),
    (A, "A-2", "FR02", True),
    (A, "A-3", "FR01", False),
    (B, "B-1", "US01", True),
    (B, "B-2", "US02", True),
]


@pytest.fixture
def trial(loaded: Container, monkeypatch: pytest.MonkeyPatch) -> Container:
    """Lists for both studies; subjects registered at several sites, most randomized."""
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
    for slug in (A, B):
        rnd.generate_list(loaded.uow(TEST_ACTOR), "test", slug)
    for slug, subject, site, randomized in SUBJECTS:
        rnd.register_subject(loaded.uow(TEST_ACTOR), EDC, slug, subject, site, STRATA)
        if randomized:
            rnd.randomize(loaded.uow(TEST_ACTOR), EDC, slug, subject, None)
    return loaded


def arm_of(container: Container, slug: str, subject_id: str) -> str:
    uow = container.uow(TEST_ACTOR)
    with uow:
        subject = uow.subjects.get(slug, subject_id)
        assert subject is not None
        arm = uow.lists.arm_of(subject)
    assert arm is not None
    return arm


def events(container: Container, chain: str, action: str | None = None) -> list[AuditRecord]:
    with container.session_factory() as session:
        return [e for e in iter_chain(session, chain) if action is None or e.action == action]


def unblind(
    client: TestClient, headers: dict[str, str], subject: str = "A-1", study: str = A, **kw: Any
) -> Any:
    return client.post(
        f"/api/v1/studies/{study}/subjects/{subject}/unblinding",
        headers=headers,
        **({"json": REASON} | kw),
    )


def refusals(container: Container, chain: str = A) -> list[tuple[str | None, str]]:
    return [
        (e.subject_id, (e.after or {})["code"])
        for e in events(container, chain, "unblinding.refused")
    ]


def stale_token(client: TestClient, make_client: MakeClient, role: str, age_s: int) -> str:
    issued = make_client(role)
    tokens = client.app.state.tokens  # type: ignore[attr-defined]
    token: str = tokens.issue(issued.client, now=datetime.now(UTC) - timedelta(seconds=age_s))
    return token


class TestUnblinding:
    def test_statistician_learns_the_arm(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = unblind(client, login("unblinded_statistician"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"subject_id", "arm", "arm_label", "unblinded_at", "unblinded_by"}
        assert body["subject_id"] == "A-1"
        assert body["arm"] == arm_of(trial, A, "A-1")
        labels = {"PLACEBO": "Placebo", "CYT107_QW": "CYT107 10 µg/kg once weekly"}
        if body["arm"] in labels:
            assert body["arm_label"] == labels[body["arm"]]
        assert body["unblinded_by"].startswith("client:")
        assert datetime.fromisoformat(body["unblinded_at"]).tzinfo is not None
        assert response.headers["cache-control"] == "no-store"

    def test_blinded_readers_see_only_the_flag(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        unblind(client, login("safety_officer"))
        for role in ("edc", "investigator", "pharmacist"):
            seen = client.get(f"/api/v1/studies/{A}/subjects/A-1", headers=login(role))
            assert seen.status_code == 200
            assert seen.json()["unblinded"] is True
            assert leaked(seen.text) == []
        other = client.get(f"/api/v1/studies/{A}/subjects/A-2", headers=login("edc"))
        assert other.json()["unblinded"] is False

    def test_recorded_audited_and_notified_without_the_arm(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = unblind(client, login("unblinded_statistician"))
        assert response.status_code == 200
        with trial.session_factory() as session:
            rows = session.scalars(select(UnblindingRow)).all()
            outbox = session.scalars(select(OutboxRow)).all()
        assert [(r.role, r.reason) for r in rows] == [("unblinded_statistician", REASON["reason"])]
        assert len(outbox) == 1
        assert outbox[0].kind == "subject.unblinded"
        payload = outbox[0].payload
        assert set(payload) == {"study", "subject", "site", "who", "role", "when", "reason"}
        assert (payload["study"], payload["subject"], payload["site"]) == (A, "A-1", "FR01")
        assert payload["who"] == response.json()["unblinded_by"]
        assert leaked(str(payload)) == []
        [event] = events(trial, A, "subject.unblinded")
        assert event.subject_id == "A-1"
        assert event.reason == REASON["reason"]
        assert leaked(str(event.payload())) == []
        trail = client.get(f"/api/v1/studies/{A}/audit", headers=login("auditor"))
        assert "subject.unblinded" in trail.text
        assert leaked(trail.text) == []

    def test_repeated_unblinding_is_allowed_and_audited_each_time(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        first = unblind(client, login("unblinded_statistician"))
        second = unblind(client, login("safety_officer"))
        assert first.json()["arm"] == second.json()["arm"]
        assert len(events(trial, A, "subject.unblinded")) == 2
        with trial.session_factory() as session:
            assert len(session.scalars(select(UnblindingRow)).all()) == 2
            assert len(session.scalars(select(OutboxRow)).all()) == 2

    def test_investigator_of_the_subjects_site(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = unblind(client, login("investigator", sites=["FR01"]))
        assert response.status_code == 200
        assert response.json()["arm"] == arm_of(trial, A, "A-1")

    def test_investigator_of_another_site_does_not_find_the_subject(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = unblind(client, login("investigator", sites=["FR02"]))
        assert response.status_code == 404
        assert response.json()["code"] == "subject_not_found"
        assert refusals(trial) == [("A-1", "subject_not_found")]

    def test_policy_without_investigators_forbids_them(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        doc = set_path(study_document(A), "unblinding.roles", ["unblinded_statistician"])
        parsed = parse_document(doc, "test")
        document, _raw, sha = canonical(parsed)
        load_study(trial.uow(TEST_ACTOR), to_domain(parsed), document, sha)
        refused = unblind(client, login("investigator", sites=["FR01"]))
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        assert leaked(refused.text) == []
        assert unblind(client, login("safety_officer")).status_code == 403
        assert unblind(client, login("unblinded_statistician")).status_code == 200
        assert refusals(trial) == [("A-1", "forbidden"), ("A-1", "forbidden")]

    def test_stale_token_is_refused(
        self, trial: Container, client: TestClient, make_client: MakeClient
    ) -> None:
        token = stale_token(client, make_client, "unblinded_statistician", 400)
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/api/v1/studies/{A}", headers=headers).status_code == 200
        response = unblind(client, headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "token_not_fresh"
        assert refusals(trial) == [("A-1", "token_not_fresh")]
        fresh = stale_token(client, make_client, "unblinded_statistician", 10)
        assert unblind(client, {"Authorization": f"Bearer {fresh}"}).status_code == 200

    @pytest.mark.parametrize(
        "kw",
        [
            {"json": None},
            {"json": {}},
            {"json": {"reason": ""}},
            {"json": {"reason": "   "}},
            {"json": {"reason": "x" * 2001}},
            {"json": {"reason": 12}},
            {"json": {"reason": "ok", "arm": "PLACEBO"}},
        ],
        ids=["no-body", "empty", "blank", "spaces", "too-long", "not-text", "extra-field"],
    )
    def test_reason_required(
        self, trial: Container, client: TestClient, login: Login, kw: dict[str, Any]
    ) -> None:
        response = unblind(client, login("unblinded_statistician"), **kw)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert refusals(trial) == [("A-1", "validation_error")]

    def test_subject_not_randomized(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = unblind(client, login("unblinded_statistician"), subject="A-3")
        assert response.status_code == 409
        assert response.json()["code"] == "subject_not_randomized"
        assert refusals(trial) == [("A-3", "subject_not_randomized")]

    @pytest.mark.parametrize("role", ["edc", "pharmacist", "supply_manager", "auditor", "admin"])
    def test_roles_that_never_unblind(
        self, trial: Container, client: TestClient, login: Login, role: str
    ) -> None:
        response = unblind(client, login(role))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
        assert refusals(trial) == [("A-1", "forbidden")]

    def test_study_not_granted(self, trial: Container, client: TestClient, login: Login) -> None:
        response = unblind(client, login("unblinded_statistician"), study=B, subject="B-1")
        assert response.status_code == 404
        assert response.json()["code"] == "study_not_found"
        assert refusals(trial, B) == [("B-1", "study_not_found")]

    def test_a_refusal_changes_nothing_but_the_audit_trail(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        unblind(client, login("investigator", sites=["FR02"]))
        unblind(client, login("unblinded_statistician"), json={})
        seen = client.get(f"/api/v1/studies/{A}/subjects/A-1", headers=login("edc"))
        assert seen.json()["unblinded"] is False
        with trial.session_factory() as session:
            assert session.scalars(select(UnblindingRow)).all() == []
            assert session.scalars(select(OutboxRow)).all() == []
        assert len(refusals(trial)) == 2

    def test_idempotent_retry_answers_the_same_and_stores_no_arm(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        headers = {**login("unblinded_statistician"), "Idempotency-Key": "unblind-A-1"}
        first = unblind(client, headers)
        again = unblind(client, headers)
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        with trial.session_factory() as session:
            stored = session.scalars(select(IdempotencyRow)).all()
            assert len(session.scalars(select(UnblindingRow)).all()) == 1
        assert [r.status_code for r in stored] == [200]
        assert leaked(stored[0].response_body or "") == []
        assert len(events(trial, A, "subject.unblinding_replayed")) == 1
        other = unblind(client, headers, json={"reason": "another reason"})
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class TestRandomizationList:
    def test_json_every_slot_with_its_subject(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        response = client.get(
            f"/api/v1/studies/{A}/randomization-list", headers=login("unblinded_statistician")
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["study"], body["mode"], body["list_version"]) == (A, "live", 1)
        uow = trial.uow(TEST_ACTOR)
        with uow:
            info = uow.lists.active(A, "live")
            assert info is not None
            slots = uow.lists.slots(info)
        assert len(body["slots"]) == sum(len(s) for s in slots.values())
        taken = {s["subject_id"]: s for s in body["slots"] if s["subject_id"]}
        assert set(taken) == {"A-1", "A-2"}
        for subject_id, line in taken.items():
            assert line["arm"] == arm_of(trial, A, subject_id)
            assert line["sequence"] == 1
            assert line["allocated_at"] is not None
        first = slots["FR01|shock=yes|age=lt65"][0]
        assert taken["A-1"]["randomization_number"] == first[1]
        assert taken["A-1"]["block_size"] == first[0].block_size
        assert response.headers["cache-control"] == "no-store"

    @pytest.mark.parametrize("how", ["accept", "query", "path"])
    def test_csv(self, trial: Container, client: TestClient, login: Login, how: str) -> None:
        headers = login("unblinded_statistician")
        url = f"/api/v1/studies/{A}/randomization-list"
        if how == "accept":
            response = client.get(url, headers={**headers, "Accept": "text/csv"})
        elif how == "query":
            response = client.get(url, params={"format": "csv"}, headers=headers)
        else:  # its own operation, for generated clients
            response = client.get(f"{url}.csv", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = rows_of(response.text)
        assert list(rows[0]) == [
            "stratum",
            "sequence",
            "randomization_number",
            "block",
            "block_size",
            "arm",
            "subject_id",
            "allocated_at",
            "stratum_corrected",
        ]
        assert {r["arm"] for r in rows} == {"PLACEBO", "CYT107_QW", "CYT107_BIW"}
        [line] = [r for r in rows if r["subject_id"] == "A-2"]
        assert line["arm"] == arm_of(trial, A, "A-2")

    def test_audited(self, trial: Container, client: TestClient, login: Login) -> None:
        headers = login("unblinded_statistician")
        client.get(f"/api/v1/studies/{A}/randomization-list", headers=headers)
        [event] = events(trial, A, "randomization_list.exported")
        assert (event.after or {})["format"] == "json"
        assert leaked(str(event.payload())) == []

    def test_no_list_yet(self, loaded: Container, client: TestClient, login: Login) -> None:
        response = client.get(
            f"/api/v1/studies/{A}/randomization-list", headers=login("unblinded_statistician")
        )
        assert response.status_code == 409
        assert response.json()["code"] == "randomization_list_missing"


class TestPooledExport:
    def test_both_studies_subjects_with_their_arms(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        unblind(client, login("unblinded_statistician", studies=[A, B]))
        response = client.get(
            "/api/v1/pooled/allocations",
            params={"studies": f"{A},{B}"},
            headers=login("unblinded_statistician", studies=[A, B]),
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = rows_of(response.text)
        assert list(rows[0]) == [
            "study",
            "site",
            "subject",
            "stratum",
            "randomization_number",
            "arm",
            "randomized_at",
            "unblinded",
            "stratum_corrected",
        ]
        got = {(r["study"], r["subject"]): r for r in rows}
        assert set(got) == {(A, "A-1"), (A, "A-2"), (B, "B-1"), (B, "B-2")}
        for (study, subject), row in got.items():
            assert row["arm"] == arm_of(trial, study, subject)
            assert row["unblinded"] == ("true" if subject == "A-1" else "false")
        assert got[(B, "B-2")]["site"] == "US02"
        assert got[(B, "B-2")]["stratum"] == "US02|shock=yes|age=lt65"
        for chain in (A, B):
            [event] = events(trial, chain, "allocations.pooled_export")
            assert (event.after or {})["studies"] == [A, B]

    def test_every_study_must_be_granted(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        headers = login("unblinded_statistician", studies=[A])
        response = client.get(
            "/api/v1/pooled/allocations", params={"studies": f"{A},{B}"}, headers=headers
        )
        assert response.status_code == 404
        assert response.json()["code"] == "study_not_found"
        assert B in response.json()["detail"]
        assert leaked(response.text) == []
        assert events(trial, A, "allocations.pooled_export") == []

    def test_unknown_study(self, trial: Container, client: TestClient, login: Login) -> None:
        headers = login("unblinded_statistician", studies=[A, B])
        response = client.get(
            "/api/v1/pooled/allocations", params={"studies": "iris-9"}, headers=headers
        )
        assert response.status_code == 404


class TestLock:
    def lock(self, client: TestClient, headers: dict[str, str]) -> Any:
        return client.post(
            f"/api/v1/studies/{A}/lock", json={"reason": "database lock"}, headers=headers
        )

    def test_once_and_for_good(self, trial: Container, client: TestClient, login: Login) -> None:
        headers = login("unblinded_statistician")
        first = self.lock(client, headers)
        assert first.status_code == 200, first.text
        assert first.json()["study"] == A
        again = self.lock(client, headers)
        assert again.status_code == 409
        assert again.json()["code"] == "study_locked"
        [event] = events(trial, A, "study.locked")
        assert event.reason == "database lock"
        missing = client.post(f"/api/v1/studies/{A}/lock", json={"reason": " "}, headers=headers)
        assert missing.status_code == 422

    def test_no_registration_nor_randomization_after_it(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        self.lock(client, login("unblinded_statistician"))
        edc = login("edc")
        randomized = client.post(
            f"/api/v1/studies/{A}/subjects/A-3/randomization", json={}, headers=edc
        )
        assert randomized.status_code == 409
        assert randomized.json()["code"] == "study_locked"
        registered = client.post(
            f"/api/v1/studies/{A}/subjects",
            json={"subject_id": "A-9", "site_id": "FR01", "strata": STRATA},
            headers=edc,
        )
        assert registered.status_code == 409
        assert registered.json()["code"] == "study_locked"
        other = client.post(
            f"/api/v1/studies/{B}/subjects",
            json={"subject_id": "B-9", "site_id": "US01", "strata": STRATA},
            headers=login("edc", studies=[B]),
        )
        assert other.status_code == 201

    def test_investigators_read_their_own_sites_arms_after_it(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        investigator = login("investigator", sites=["FR01"])
        url = f"/api/v1/studies/{A}/subjects/A-1/arm"
        before = client.get(url, headers=investigator)
        assert before.status_code == 409
        assert before.json()["code"] == "study_not_locked"
        assert leaked(before.text) == []
        self.lock(client, login("unblinded_statistician"))
        after = client.get(url, headers=investigator)
        assert after.status_code == 200
        assert after.json()["arm"] == arm_of(trial, A, "A-1")
        assert after.headers["cache-control"] == "no-store"
        elsewhere = client.get(f"/api/v1/studies/{A}/subjects/A-2/arm", headers=investigator)
        assert elsewhere.status_code == 404
        not_randomized = client.get(f"/api/v1/studies/{A}/subjects/A-3/arm", headers=investigator)
        assert not_randomized.status_code == 409
        for role in ("edc", "pharmacist"):
            refused = client.get(url, headers=login(role))
            assert refused.status_code == 403
            assert leaked(refused.text) == []
        [event] = events(trial, A, "subject.arm_read")
        assert event.subject_id == "A-1"
        assert leaked(str(event.payload())) == []


def test_arm_secrets_are_the_example_studies() -> None:
    assert {"PLACEBO", "CYT107_QW", "CYT107_BIW", "Placebo", "KT_IL7", "KT_PBO"} <= set(ARM_SECRETS)
