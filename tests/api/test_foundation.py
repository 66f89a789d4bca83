"""Health, readiness, studies, problem+json, request ids and the OpenAPI document."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.crypto.keyring import KeyUnavailable, load_keyring
from app.adapters.logs import JsonFormatter
from app.bootstrap import Container, bootstrap
from tests.api.conftest import Login

PROBLEM = "application/problem+json"


class TestOperations:
    def test_health(self, client: TestClient) -> None:
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"

    def test_ready_when_database_and_keys_are_fine(self, client: TestClient) -> None:
        response = client.get("/ready")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": "ok", "key": "ok", "study_keys": "ok"}

    def test_not_ready_without_keys(self, loaded: Container, tmp_path: Path) -> None:
        def missing() -> object:
            return load_keyring(tmp_path / "nothing-here")

        broken = bootstrap(
            loaded.settings,
            engine=loaded.engine,
            session_factory=loaded.session_factory,
            load_keys=missing,  # type: ignore[arg-type]
        )
        with TestClient(create_app(broken)) as client:
            response = client.get("/ready")
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["code"] == "not_ready"
        assert body["checks"]["key"].startswith("unavailable")
        assert "nothing-here" not in response.text

    def test_request_id_echoed_or_made(self, client: TestClient) -> None:
        given = client.get("/health", headers={"X-Request-ID": "edc-abc-123456"})
        assert given.headers["x-request-id"] == "edc-abc-123456"
        made = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
        assert made.headers["x-request-id"] != "bad id with spaces"
        assert len(made.headers["x-request-id"]) == 32

    def test_openapi_document(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        assert "/api/v1/studies/{study}" in spec["paths"]
        assert client.get("/docs").status_code == 200


@pytest.fixture
def admin(login: Login) -> dict[str, str]:
    return login("admin")


class TestStudies:
    def test_list(self, client: TestClient, admin: dict[str, str]) -> None:
        response = client.get("/api/v1/studies", headers=admin)
        assert response.status_code == 200
        assert [s["slug"] for s in response.json()["studies"]] == ["iris-7a", "iris-7b"]

    def test_detail_has_arms_visits_sites_and_strata(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        body = client.get("/api/v1/studies/iris-7b", headers=admin).json()
        assert [a["code"] for a in body["arms"]] == ["PLACEBO", "CYT107_QW", "CYT107_BIW"]
        assert [v["code"] for v in body["visits"]] == [
            "D1",
            "D4",
            "D8",
            "D11",
            "D15",
            "D18",
            "D22",
            "D25",
        ]
        assert {s["code"] for s in body["sites"]} == {"US01", "US02", "US03"}
        assert [f["code"] for f in body["stratification_factors"]] == ["shock", "age"]

    def test_detail_never_shows_kit_types_or_dispensing(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        text = client.get("/api/v1/studies/iris-7a", headers=admin).text
        for secret in ("KT_IL7", "KT_PBO", "kit_type", "dispensing", "vial"):
            assert secret not in text

    def test_unknown_study_is_problem_json(self, client: TestClient, admin: dict[str, str]) -> None:
        response = client.get("/api/v1/studies/iris-9z", headers=admin)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["code"] == "study_not_found"
        assert body["status"] == 404
        assert body["title"]
        assert body["type"].endswith("study_not_found")
        assert body["request_id"] == response.headers["x-request-id"]

    def test_unknown_path_is_problem_json(self, client: TestClient) -> None:
        response = client.get("/api/v1/nowhere")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


class TestFailures:
    def test_unexpected_error_is_500_problem_with_request_id(
        self, loaded: Container, monkeypatch: pytest.MonkeyPatch, admin: dict[str, str]
    ) -> None:
        from app.services import studies

        def boom(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(studies, "list_studies", boom)
        with TestClient(create_app(loaded), raise_server_exceptions=False) as client:
            response = client.get(
                "/api/v1/studies", headers={"X-Request-ID": "req-500-abcdef", **admin}
            )
        assert response.status_code == 500
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "internal_error"
        assert response.json()["request_id"] == "req-500-abcdef"
        assert "boom" not in response.text

    def test_key_error_is_503_problem(
        self, loaded: Container, monkeypatch: pytest.MonkeyPatch, admin: dict[str, str]
    ) -> None:
        def no_key(*_args: object, **_kwargs: object) -> None:
            raise KeyUnavailable("no key")

        monkeypatch.setattr(loaded.keys, "cipher", no_key)
        with TestClient(create_app(loaded)) as client:
            response = client.get("/api/v1/studies/iris-7a", headers=admin)
        assert response.status_code == 503
        assert response.json()["code"] == "key_unavailable"


class TestLogs:
    def test_every_log_line_is_json_with_the_request_id(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, admin: dict[str, str]
    ) -> None:
        caplog.set_level(logging.INFO)
        client.get("/api/v1/studies", headers={"X-Request-ID": "log-check-0001", **admin})
        access = [r for r in caplog.records if r.name == "iwrs.access"]
        assert access, "no access log line"
        line = json.loads(JsonFormatter().format(access[-1]))
        assert line["request_id"] == "log-check-0001"
        assert line["path"] == "/api/v1/studies"
        assert line["status"] == 200
