"""The audit trail over the API: blinded, paged, filtered; failures on record too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.api.conftest import Login, MakeClient


class TestAuditTrail:
    def test_study_events_with_hash_chain(self, client: TestClient, login: Login) -> None:
        headers = login("auditor")
        body = client.get("/api/v1/studies/iris-7a/audit", headers=headers).json()
        actions = [e["action"] for e in body["events"]]
        assert actions[0] == "study.created"
        assert "client.created" in actions
        assert [e["seq"] for e in body["events"]] == list(range(1, len(actions) + 1))
        assert body["events"][1]["prev_hash"] == body["events"][0]["hash"]
        assert body["head_seq"] == len(actions)

    def test_filters_and_paging(
        self, client: TestClient, login: Login, make_client: MakeClient
    ) -> None:
        for _ in range(3):
            make_client("edc")
        headers = login("auditor")
        url = "/api/v1/studies/iris-7a/audit"
        created = client.get(url, params={"action": "client.created"}, headers=headers).json()
        assert len(created["events"]) == 4
        assert {e["action"] for e in created["events"]} == {"client.created"}
        first = client.get(url, params={"limit": 2}, headers=headers).json()
        assert len(first["events"]) == 2
        assert first["next_after_seq"] == 2
        second = client.get(url, params={"limit": 2, "after_seq": 2}, headers=headers).json()
        assert [e["seq"] for e in second["events"]] == [3, 4]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        none = client.get(url, params={"since": future}, headers=headers).json()
        assert none["events"] == []
        # A date, or a time without a zone, is read as UTC (it answered 500 before).
        today = datetime.now(UTC).date()
        for since in (today.isoformat(), f"{today.isoformat()}T00:00:00"):
            dated = client.get(url, params={"since": since}, headers=headers)
            assert dated.status_code == 200, dated.text
            assert len(dated.json()["events"]) >= 4
        tomorrow = (today + timedelta(days=1)).isoformat()
        assert client.get(url, params={"since": tomorrow}, headers=headers).json()["events"] == []
        bad = client.get(url, params={"limit": 0}, headers=headers)
        assert bad.status_code == 422
        assert bad.json()["code"] == "validation_error"

    def test_token_failures_are_on_record(
        self, client: TestClient, loaded: object, make_client: MakeClient
    ) -> None:
        from app.adapters.db.audit import iter_chain
        from app.bootstrap import Container

        assert isinstance(loaded, Container)
        issued = make_client("edc")
        form = {"grant_type": "client_credentials", "client_id": issued.client.client_id}
        client.post("/oauth/token", data={**form, "client_secret": "wrong"})
        client.post("/oauth/token", data={**form, "client_secret": issued.secret})
        with loaded.session_factory() as session:
            events = [(e.action, e.reason) for e in iter_chain(session, "_system")]
        assert ("auth.token_refused", "wrong secret") in events
        assert ("auth.token_issued", None) in events
        assert all("secret" not in str(e) or "wrong secret" in str(e) for e in events)
