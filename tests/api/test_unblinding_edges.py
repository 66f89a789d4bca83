"""Emergency unblinding at its edges (issue 19, item 5): text the database cannot store, an
idempotent replay with a token a new request would be refused with, and idempotency records
past their retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.adapters.api.idempotency import IdempotencyRequest
from app.adapters.db.idempotency import IdempotentReplay
from app.adapters.db.models import IdempotencyRow, UnblindingRow
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.errors import StudyNotFound
from app.domain.roles import Role
from app.services.clients import IssuedSecret
from tests.api.conftest import Login, MakeClient
from tests.api.test_blinding import A, B, events, refusals, unblind
from tests.api.test_blinding import trial as trial  # the fixture
from tests.integration.test_blind_leaks import leaked

PROBLEM = "application/problem+json"
URL = f"/api/v1/studies/{A}/subjects/A-1/unblinding"


def raw(client: TestClient, headers: dict[str, str], url: str, body: str) -> Any:
    """POST `body` as it is: JSON text may carry a lone surrogate escape (`"\\ud800"`)."""
    return client.post(url, headers={**headers, "Content-Type": "application/json"}, content=body)


def bearer(client: TestClient, issued: IssuedSecret, age_s: int = 0) -> dict[str, str]:
    """A token of that client issued `age_s` seconds ago."""
    tokens = client.app.state.tokens  # type: ignore[attr-defined]
    token = tokens.issue(issued.client, now=datetime.now(UTC) - timedelta(seconds=age_s))
    return {"Authorization": f"Bearer {token}"}


def unblindings(container: Container) -> int:
    with container.session_factory() as session:
        return len(session.scalars(select(UnblindingRow)).all())


class TestUnstorableText:
    @pytest.mark.parametrize(
        "body",
        ['{"reason": "anaphylaxis \\ud800"}', '{"reason": "\\udfff"}', '{"reason": "a\\u0000b"}'],
        ids=["lone-high-surrogate", "lone-low-surrogate", "nul"],
    )
    def test_in_the_reason_refused_and_audited(
        self, trial: Container, client: TestClient, login: Login, body: str
    ) -> None:
        response = raw(client, login("unblinded_statistician"), URL, body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "validation_error"
        assert refusals(trial) == [("A-1", "validation_error")]
        [refused] = events(trial, A, "unblinding.refused")
        assert refused.reason is not None
        assert "\ufffd" in refused.reason
        assert unblindings(trial) == 0

    @pytest.mark.parametrize(
        ("role", "path", "body"),
        [
            (
                "edc",
                "subjects",
                '{"subject_id": "N1", "site_id": "FR01", "strata": {"shock": "\\ud800"}}',
            ),
            ("unblinded_statistician", "lock", '{"reason": "locked\\u0000"}'),
            (
                "edc",
                "subjects/A-1/discontinuation",
                '{"reason": "adverse_event", "detail": "a\\u0000b"}',
            ),
            ("edc", "subjects/A-1/dispensations", '{"visit": "D4\\u0000", "weight_kg": 70}'),
            (
                "edc",
                "subjects",
                '{"subject_id": "N1", "site_id": "FR01", "strata": {"\\ud800": "yes"}}',
            ),
        ],
        ids=[
            "registration-strata-level",
            "lock-reason-nul",
            "discontinuation-detail-nul",
            "dispensing-visit-nul",
            "registration-strata-factor",
        ],
    )
    def test_every_request_model_refuses_it(
        self, trial: Container, client: TestClient, login: Login, role: str, path: str, body: str
    ) -> None:
        response = raw(client, login(role), f"/api/v1/studies/{A}/{path}", body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"


class TestReplay:
    def test_a_stale_token_is_refused_as_a_new_request_is_and_audited(
        self, trial: Container, client: TestClient, make_client: MakeClient
    ) -> None:
        issued = make_client("unblinded_statistician")
        key = {"Idempotency-Key": "unblind-A-1"}
        first = unblind(client, bearer(client, issued) | key)
        assert first.status_code == 200, first.text
        stale = bearer(client, issued, age_s=400)
        new = unblind(client, stale | {"Idempotency-Key": "another"})
        replay = unblind(client, stale | key)
        assert replay.status_code == new.status_code == 401
        assert replay.headers["content-type"] == PROBLEM
        assert replay.json()["code"] == new.json()["code"] == "token_not_fresh"
        assert "idempotent-replayed" not in replay.headers
        assert leaked(replay.text) == []
        assert refusals(trial) == [("A-1", "token_not_fresh"), ("A-1", "token_not_fresh")]
        assert events(trial, A, "subject.unblinding_replayed") == []
        again = unblind(client, bearer(client, issued, age_s=10) | key)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert len(events(trial, A, "subject.unblinding_replayed")) == 1
        assert unblindings(trial) == 1

    def test_the_guard_replays_only_to_a_caller_the_token_still_grants_the_study(
        self, trial: Container
    ) -> None:
        now = datetime.now(UTC)
        request = IdempotencyRequest("k", "fingerprint", A)
        with trial.session_factory() as session:
            session.add(
                IdempotencyRow(
                    principal="edc-1",
                    key="k",
                    fingerprint="fingerprint",
                    status_code=201,
                    response_body="{}",
                    created_at=now,
                )
            )
            session.flush()
            for studies, expected in (({A, B}, IdempotentReplay), ({B}, StudyNotFound)):
                principal = Principal("edc-1", Role.EDC, frozenset(studies))
                guard = request.guard(principal, lambda result: (201, result))
                assert guard is not None
                with pytest.raises(expected):
                    guard.begin(session, now)


class TestRetention:
    def age(self, container: Container, hours: float) -> None:
        with container.session_factory() as session:
            session.execute(
                update(IdempotencyRow).values(created_at=datetime.now(UTC) - timedelta(hours=hours))
            )
            session.commit()

    def test_a_retry_within_the_retention_is_a_replay(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        headers = {**login("unblinded_statistician"), "Idempotency-Key": "k"}
        assert unblind(client, headers).status_code == 200
        self.age(trial, 23)
        assert unblind(client, headers).headers.get("idempotent-replayed") == "true"
        assert unblindings(trial) == 1

    def test_after_it_the_key_is_free_again(
        self, trial: Container, client: TestClient, login: Login
    ) -> None:
        headers = {**login("unblinded_statistician"), "Idempotency-Key": "k"}
        assert unblind(client, headers).status_code == 200
        self.age(trial, 25)
        again = unblind(client, headers)
        assert again.status_code == 200
        assert "idempotent-replayed" not in again.headers
        assert unblindings(trial) == 2
        self.age(trial, 25)
        other = unblind(client, headers, json={"reason": "another reason, a day later"})
        assert other.status_code == 200, other.text
        assert unblindings(trial) == 3
        with trial.session_factory() as session:
            assert len(session.scalars(select(IdempotencyRow)).all()) == 1
