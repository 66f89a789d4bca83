"""OAuth client credentials, token validation (RFC 8725), revocation and the throttle."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from app.adapters.api.tokens import TokenService
from app.bootstrap import Container
from app.domain.clients import MAX_FAILURES
from app.services.clients import IssuedSecret, disable_client, rotate_secret
from tests.api.conftest import MakeClient
from tests.conftest import TEST_ACTOR

PROBLEM = "application/problem+json"
REGISTER_STRATA = {"shock": "yes", "age": "lt65"}


def _form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestTokenEndpoint:
    def test_form_body(self, client: TestClient, make_client: MakeClient) -> None:
        issued = make_client("edc")
        response = client.post("/oauth/token", data=_form(issued.client.client_id, issued.secret))
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        assert response.headers["cache-control"] == "no-store"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["role"] == "edc"
        assert claims["studies"] == ["iris-7a"]
        assert jwt.get_unverified_header(body["access_token"])["alg"] == "EdDSA"

    def test_http_basic(self, client: TestClient, make_client: MakeClient) -> None:
        issued = make_client("pharmacist", sites=["FR02"])
        basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
        response = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert claims["sites"] == {"iris-7a": ["FR02"]}

    def test_wrong_secret_and_unknown_client_look_the_same(
        self, client: TestClient, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        wrong = client.post("/oauth/token", data=_form(issued.client.client_id, "nope"))
        unknown = client.post("/oauth/token", data=_form("c_doesnotexist", "nope"))
        for response in (wrong, unknown):
            assert response.status_code == 401
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["code"] == "invalid_client"
            assert response.json()["error"] == "invalid_client"
        assert wrong.json()["detail"] == unknown.json()["detail"]

    def test_unsupported_grant_and_missing_fields(self, client: TestClient) -> None:
        response = client.post("/oauth/token", data={"grant_type": "password"})
        assert response.status_code == 400
        assert response.json()["code"] == "unsupported_grant_type"
        response = client.post("/oauth/token", data={"grant_type": "client_credentials"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_request"

    def test_secret_never_echoed_in_validation_errors(self, client: TestClient) -> None:
        response = client.post("/oauth/token", data={"client_secret": "s3cr3t-value"})
        assert response.status_code == 422
        assert "s3cr3t-value" not in response.text


class TestBearerValidation:
    @pytest.fixture
    def good(self, client: TestClient, make_client: MakeClient) -> str:
        issued = make_client("auditor")
        response = client.post("/oauth/token", data=_form(issued.client.client_id, issued.secret))
        return str(response.json()["access_token"])

    def _refused(self, client: TestClient, headers: dict[str, str]) -> None:
        response = client.get("/api/v1/studies", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "unauthorized"
        assert response.json()["detail"] in {"a bearer token is required", "the token is not valid"}

    def test_good_token_works(self, client: TestClient, good: str) -> None:
        assert client.get("/api/v1/studies", headers=_bearer(good)).status_code == 200

    def test_missing_or_not_bearer(self, client: TestClient, good: str) -> None:
        self._refused(client, {})
        self._refused(client, {"Authorization": f"Token {good}"})
        self._refused(client, _bearer("not.a.jwt"))

    def test_tampered_payload(self, client: TestClient, good: str) -> None:
        header, payload, signature = good.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["role"] = "unblinded_statistician"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        self._refused(client, _bearer(f"{header}.{forged}.{signature}"))

    def test_alg_none(self, client: TestClient, good: str) -> None:
        claims = jwt.decode(good, options={"verify_signature": False})
        unsigned = jwt.encode(claims, key=None, algorithm="none", headers={"typ": "at+jwt"})
        self._refused(client, _bearer(unsigned))

    def test_key_confusion_hs256_with_public_key(
        self, client: TestClient, good: str, loaded: Container
    ) -> None:
        public = loaded.keys.keyring().signing_key.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = jwt.decode(good, options={"verify_signature": False})
        header = {"typ": "at+jwt", "alg": "HS256"}
        raw_header = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=")
        raw_claims = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        import hashlib
        import hmac

        signing_input = raw_header + b"." + raw_claims
        mac = hmac.new(pem, signing_input, hashlib.sha256).digest()
        token = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
        self._refused(client, _bearer(token))

    def test_expired_not_yet_valid_and_foreign_audience(
        self, client: TestClient, loaded: Container, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        settings = loaded.settings
        ours = TokenService(
            loaded.keys.keyring, settings.token_issuer, settings.token_audience, 900
        )
        past = datetime.now(UTC) - timedelta(hours=2)
        self._refused(client, _bearer(ours.issue(issued.client, now=past)))
        future = datetime.now(UTC) + timedelta(hours=2)
        self._refused(client, _bearer(ours.issue(issued.client, now=future)))
        theirs = TokenService(loaded.keys.keyring, settings.token_issuer, "another-api", 900)
        self._refused(client, _bearer(theirs.issue(issued.client)))
        other_issuer = TokenService(
            loaded.keys.keyring, "someone-else", settings.token_audience, 900
        )
        self._refused(client, _bearer(other_issuer.issue(issued.client)))
        assert (
            client.get("/api/v1/studies", headers=_bearer(ours.issue(issued.client))).status_code
            == 200
        )


def _disabled_after_a_call(
    client: TestClient, loaded: Container, make_client: MakeClient
) -> tuple[IssuedSecret, str]:
    """A client that made one call with its token (so it is known), then was disabled."""
    issued = make_client("edc")
    token = client.post("/oauth/token", data=_form(issued.client.client_id, issued.secret)).json()[
        "access_token"
    ]
    assert client.get("/api/v1/studies", headers=_bearer(token)).status_code == 200
    disable_client(
        loaded.uow(TEST_ACTOR), issued.client.client_id, "left the study", datetime.now(UTC)
    )
    return issued, token


class TestRevocation:
    def test_disabled_client_tokens_stop_at_once(
        self, client: TestClient, loaded: Container, make_client: MakeClient
    ) -> None:
        issued, token = _disabled_after_a_call(client, loaded, make_client)
        assert client.get("/api/v1/studies", headers=_bearer(token)).status_code == 401
        again = client.post("/oauth/token", data=_form(issued.client.client_id, issued.secret))
        assert again.status_code == 401

    def test_a_known_caller_disabled_is_refused_before_any_change(
        self, client: TestClient, loaded: Container, make_client: MakeClient
    ) -> None:
        # After its first call the client's role and grants are kept in memory; that it is
        # still enabled is read in the transaction of every later call, so a write with a
        # token of a client disabled meanwhile is refused and changes nothing.
        _issued, token = _disabled_after_a_call(client, loaded, make_client)
        refused = client.post(
            "/api/v1/studies/iris-7a/subjects",
            json={"subject_id": "GONE-1", "site_id": "FR01", "strata": REGISTER_STRATA},
            headers={**_bearer(token), "Idempotency-Key": "gone-1"},
        )
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
        with loaded.uow(TEST_ACTOR) as uow:
            assert uow.subjects.get("iris-7a", "GONE-1") is None

    def test_rotated_secret_ends_old_secret_and_tokens(
        self, client: TestClient, loaded: Container, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        old_token = client.post(
            "/oauth/token", data=_form(issued.client.client_id, issued.secret)
        ).json()["access_token"]
        rotated = rotate_secret(loaded.uow(TEST_ACTOR), loaded.hasher, issued.client.client_id)
        assert rotated.secret != issued.secret
        assert client.get("/api/v1/studies", headers=_bearer(old_token)).status_code == 401
        cid = issued.client.client_id
        assert client.post("/oauth/token", data=_form(cid, issued.secret)).status_code == 401
        assert client.post("/oauth/token", data=_form(cid, rotated.secret)).status_code == 200


class TestThrottle:
    def test_locked_after_repeated_failures_without_locking_others(
        self, client: TestClient, make_client: MakeClient
    ) -> None:
        victim = make_client("edc")
        bystander = make_client("edc")
        cid = victim.client.client_id
        for _ in range(MAX_FAILURES):
            assert client.post("/oauth/token", data=_form(cid, "guess")).status_code == 401
        locked = client.post("/oauth/token", data=_form(cid, victim.secret))
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert locked.json()["code"] == "too_many_requests"
        other = client.post(
            "/oauth/token", data=_form(bystander.client.client_id, bystander.secret)
        )
        assert other.status_code == 200

    def test_success_clears_the_count(self, client: TestClient, make_client: MakeClient) -> None:
        issued = make_client("edc")
        cid = issued.client.client_id
        for _ in range(MAX_FAILURES - 1):
            client.post("/oauth/token", data=_form(cid, "guess"))
        assert client.post("/oauth/token", data=_form(cid, issued.secret)).status_code == 200
        for _ in range(MAX_FAILURES - 1):
            client.post("/oauth/token", data=_form(cid, "guess"))
        assert client.post("/oauth/token", data=_form(cid, issued.secret)).status_code == 200

    def test_unknown_ids_are_throttled_too(self, client: TestClient) -> None:
        for _ in range(MAX_FAILURES):
            client.post("/oauth/token", data=_form("c_probe", "guess"))
        assert client.post("/oauth/token", data=_form("c_probe", "x")).status_code == 429
