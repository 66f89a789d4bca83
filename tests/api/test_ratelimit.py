"""The IETF RateLimit fields on the throttled token endpoint (draft-ietf-httpapi-ratelimit-
headers-12): the policy is the throttle's, the current state follows each failure."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from httpx import Response

from app.domain.clients import MAX_FAILURES, WINDOW
from tests.api.conftest import MakeClient

WINDOW_S = int(WINDOW.total_seconds())
POLICY = f'"token-failures";q={MAX_FAILURES};w={WINDOW_S}'
# One Structured Fields list member: a quoted string and its parameters.
ITEM = re.compile(r'^"token-failures";r=(\d+)(?:;t=(\d+))?$')


def _form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def _state(response: Response) -> tuple[int, int | None]:
    assert response.headers["ratelimit-policy"] == POLICY
    found = ITEM.match(response.headers["ratelimit"])
    assert found is not None, response.headers["ratelimit"]
    remaining, reset = found.groups()
    return int(remaining), None if reset is None else int(reset)


class TestRateLimitFields:
    def test_a_success_has_the_whole_quota(
        self, client: TestClient, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        ok = client.post("/oauth/token", data=_form(issued.client.client_id, issued.secret))
        assert ok.status_code == 200
        assert _state(ok) == (MAX_FAILURES, None)

    def test_each_failure_spends_one_and_the_window_runs(
        self, client: TestClient, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        cid = issued.client.client_id
        for spent in range(1, MAX_FAILURES):
            refused = client.post("/oauth/token", data=_form(cid, "guess"))
            assert refused.status_code == 401
            remaining, reset = _state(refused)
            assert remaining == MAX_FAILURES - spent
            assert reset is not None
            assert 0 < reset <= WINDOW_S
        ok = client.post("/oauth/token", data=_form(cid, issued.secret))
        assert _state(ok) == (MAX_FAILURES, None)  # a success clears the count

    def test_the_lock_and_the_429_say_nothing_remains_until_retry_after(
        self, client: TestClient, make_client: MakeClient
    ) -> None:
        issued = make_client("edc")
        cid = issued.client.client_id
        for _ in range(MAX_FAILURES - 1):
            client.post("/oauth/token", data=_form(cid, "guess"))
        locking = client.post("/oauth/token", data=_form(cid, "guess"))
        assert locking.status_code == 401
        assert _state(locking)[0] == 0
        locked = client.post("/oauth/token", data=_form(cid, issued.secret))
        assert locked.status_code == 429
        remaining, reset = _state(locked)
        assert remaining == 0
        assert reset == int(locked.headers["retry-after"]) > 0

    def test_a_malformed_request_counts_nothing_and_says_nothing(self, client: TestClient) -> None:
        response = client.post("/oauth/token", data={"grant_type": "client_credentials"})
        assert response.status_code == 400
        assert "ratelimit" not in response.headers
