"""Retired operations announce themselves (docs/api-versioning.md): Deprecation (RFC 9745),
Sunset (RFC 8594) and a Link to the policy, on every answer, errors included; nothing else
changes. Nothing is deprecated today, so a test app declares a fake retired operation."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.api.deprecation import (
    DEPRECATED,
    MIN_NOTICE,
    POLICY_URL,
    Deprecated,
    install_deprecations,
)
from app.bootstrap import Container
from tests.api.conftest import Login

DEPRECATED_AT = datetime(2027, 1, 4, tzinfo=UTC)
SUNSET_AT = datetime(2027, 12, 31, tzinfo=UTC)
OLD = Deprecated(DEPRECATED_AT, SUNSET_AT, replacement="/api/v1/things/{thing}/new")


def _fake_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/things/{thing}/old")
    def old(thing: str) -> dict[str, str]:
        if thing == "missing":
            raise HTTPException(404, "no such thing")
        return {"thing": thing}

    @app.get("/api/v1/things/{thing}/new")
    def new(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @app.post("/api/v1/things/{thing}/old")
    def old_post(thing: str) -> dict[str, str]:
        return {"thing": thing}

    install_deprecations(app, {("GET", "/api/v1/things/{thing}/old"): OLD})
    return app


class TestDeclaredOperation:
    def test_every_answer_carries_the_fields(self) -> None:
        client = TestClient(_fake_app())
        for path, status in (("/api/v1/things/a/old", 200), ("/api/v1/things/missing/old", 404)):
            response = client.get(path)
            assert response.status_code == status
            assert response.headers["deprecation"] == f"@{int(DEPRECATED_AT.timestamp())}"
            assert parsedate_to_datetime(response.headers["sunset"]) == SUNSET_AT
            assert response.headers["sunset"].endswith(" GMT")
            link = response.headers["link"]
            assert f'<{POLICY_URL}>; rel="deprecation"' in link
            assert '</api/v1/things/{thing}/new>; rel="successor-version"' in link
        assert client.get("/api/v1/things/a/old").json() == {"thing": "a"}  # still works

    def test_other_operations_and_methods_are_untouched(self) -> None:
        client = TestClient(_fake_app())
        for response in (client.get("/api/v1/things/a/new"), client.post("/api/v1/things/a/old")):
            assert response.status_code == 200
            assert not {"deprecation", "sunset", "link"} & set(response.headers)

    def test_the_openapi_document_marks_it(self) -> None:
        paths = TestClient(_fake_app()).get("/openapi.json").json()["paths"]
        assert paths["/api/v1/things/{thing}/old"]["get"]["deprecated"] is True
        assert "deprecated" not in paths["/api/v1/things/{thing}/old"]["post"]
        assert "deprecated" not in paths["/api/v1/things/{thing}/new"]["get"]


class TestDeclarations:
    def test_an_unknown_operation_is_refused(self) -> None:
        app = FastAPI()
        with pytest.raises(ValueError, match="GET /api/v1/nowhere"):
            install_deprecations(app, {("GET", "/api/v1/nowhere"): OLD})

    def test_a_sunset_sooner_than_the_promised_notice_is_refused(self) -> None:
        app = FastAPI()

        @app.get("/x")
        def x() -> None: ...

        hasty = Deprecated(DEPRECATED_AT, DEPRECATED_AT + MIN_NOTICE / 2)
        with pytest.raises(ValueError, match="days after the deprecation"):
            install_deprecations(app, {("GET", "/x"): hasty})

    def test_nothing_is_deprecated_today(self) -> None:
        assert DEPRECATED == {}


class TestTheServiceApp:
    def test_no_fields_while_nothing_is_deprecated(self, client: TestClient, login: Login) -> None:
        response = client.get("/api/v1/studies", headers=login("edc"))
        assert response.status_code == 200
        assert "deprecation" not in response.headers

    def test_a_declared_operation_of_the_service_announces_itself(
        self, loaded: Container, login: Login, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(DEPRECATED, ("GET", "/api/v1/studies"), OLD)
        auth = login("edc")
        with TestClient(create_app(loaded), raise_server_exceptions=False) as client:
            listed = client.get("/api/v1/studies", headers=auth)
            assert listed.status_code == 200
            assert listed.headers["deprecation"] == f"@{int(DEPRECATED_AT.timestamp())}"
            assert "sunset" in listed.headers
            refused = client.get("/api/v1/studies")
            assert refused.status_code == 401
            assert "deprecation" in refused.headers
            assert "deprecation" not in client.get("/api/v1/studies/iris-7a", headers=auth).headers
            document = client.get("/openapi.json").json()
            assert document["paths"]["/api/v1/studies"]["get"]["deprecated"] is True
