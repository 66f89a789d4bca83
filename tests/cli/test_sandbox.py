"""`iwrs quickstart --sandbox`: one command takes an EDC developer to a randomization, in a
sandbox marked UAT (studies in uat mode, the banner), with secrets printed once."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.adapters.api.app import create_app
from app.adapters.cli.main import app as cli
from app.adapters.cli.sandbox import BANNER, ROLES
from app.bootstrap import bootstrap
from app.settings import Settings
from tests.cli.conftest import run

EXPORT = re.compile(r"^export CLIENT_ID=(\S+) CLIENT_SECRET=(\S+)$", re.MULTILINE)


@contextmanager
def api(env: dict[str, str]) -> Iterator[TestClient]:
    """The app in-process on the database and keys the command prepared."""
    settings = Settings(
        database_url=env["IWRS_DATABASE_URL"],
        keys_dir=Path(env["IWRS_KEYS_DIR"]),
        auth_failure_delay_scale=0,
        housekeeping_seconds=0,
    )
    container = bootstrap(settings)
    try:
        with TestClient(create_app(container), raise_server_exceptions=False) as client:
            yield client
    finally:
        container.dispose()


def _token(client: TestClient, client_id: str, secret: str) -> dict[str, str]:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _json_run(env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["quickstart", "--sandbox", "--no-serve", "--json"], env=env)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


class TestSandbox:
    def test_one_command_to_a_randomization_in_uat(self, env: dict[str, str]) -> None:
        code, output = run(env, "quickstart", "--sandbox", "--no-serve")
        assert code == 0, output
        assert BANNER in output
        for role in ROLES:
            assert re.search(rf"^  {role.value} +c_\w+ +\S+", output, re.MULTILINE), role
        found = EXPORT.search(output)
        assert found is not None, output
        client_id, secret = found.groups()
        study = re.search(r"\$IWRS/api/v1/studies/([\w-]+)/subjects'?$", output, re.MULTILINE)
        register = re.search(r"-d '(\{\"subject_id\".*?\})' ", output)
        randomize = re.search(r"-d '(\{\"weight_kg\".*?\})' ", output)
        assert study, output
        assert register, output
        assert randomize, output
        slug = study.group(1)
        body = json.loads(register.group(1))

        with api(env) as client:
            auth = _token(client, client_id, secret)
            for listed in client.get("/api/v1/studies", headers=auth).json()["studies"]:
                detail = client.get(f"/api/v1/studies/{listed['slug']}", headers=auth).json()
                assert detail["status"]["mode"] == "uat"
            created = client.post(f"/api/v1/studies/{slug}/subjects", json=body, headers=auth)
            assert created.status_code == 201, created.text
            randomized = client.post(
                f"/api/v1/studies/{slug}/subjects/{body['subject_id']}/randomization",
                json=json.loads(randomize.group(1)),
                headers=auth,
            )
            assert randomized.status_code == 201, randomized.text
            assert randomized.json()["dispensation"]["kits"]
            assert "arm" not in randomized.json()
            view = client.get(f"/api/v1/studies/{slug}/subjects/{body['subject_id']}", headers=auth)
            assert view.json()["status"] == "randomized"

    def test_json_credentials_received_shipments_and_a_second_run(
        self, env: dict[str, str]
    ) -> None:
        first = _json_run(env)
        assert first["mode"] == "uat"
        clients = first["clients"]
        assert set(clients) == {r.value for r in ROLES}
        pharmacist = clients["pharmacist"]
        with api(env) as client:
            auth = _token(client, pharmacist["client_id"], pharmacist["client_secret"])
            for slug in first["studies"]:
                shipments = client.get(f"/api/v1/studies/{slug}/shipments", headers=auth).json()
                assert shipments["shipments"]
                assert {s["status"] for s in shipments["shipments"]} == {"received"}
            audit = _token(
                client, clients["auditor"]["client_id"], clients["auditor"]["client_secret"]
            )
            events = client.get("/api/v1/studies/iris-7a/audit", headers=audit).json()
            receipts = [e for e in events["events"] if e["action"] == "shipment.received"]
            assert receipts
            assert {e["actor_id"] for e in receipts} == {f"client:{pharmacist['client_id']}"}

        second = _json_run(env)  # run again: same clients, new secrets, the old ones end
        edc_before, edc_after = clients["edc"], second["clients"]["edc"]
        assert edc_after["client_id"] == edc_before["client_id"]
        assert edc_after["client_secret"] != edc_before["client_secret"]
        with api(env) as client:
            stale = client.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": edc_before["client_id"],
                    "client_secret": edc_before["client_secret"],
                },
            )
            assert stale.status_code == 401
            _token(client, edc_after["client_id"], edc_after["client_secret"])

    def test_refuses_a_live_database_with_subjects(self, env: dict[str, str]) -> None:
        assert run(env, "quickstart", "--no-serve")[0] == 0
        code, output = run(
            env, "clients", "create", "--study", "iris-7a", "--role", "edc", "--name", "e", "--json"
        )
        assert code == 0, output
        issued = json.loads(output)
        with api(env) as client:
            auth = _token(client, issued["client_id"], issued["client_secret"])
            body = {
                "subject_id": "LIVE-1",
                "site_id": "FR01",
                "strata": {"shock": "no", "age": "lt65"},
            }
            assert (
                client.post("/api/v1/studies/iris-7a/subjects", json=body, headers=auth).status_code
                == 201
            )
        code, output = run(env, "quickstart", "--sandbox", "--no-serve")
        assert code == 1
        assert "iris-7a is live and has subjects" in output
        assert "live" in run(env, "studies", "mode", "--study", "iris-7a")[1]

    def test_json_goes_with_sandbox(self, env: dict[str, str]) -> None:
        code, output = run(env, "quickstart", "--no-serve", "--json")
        assert code == 1
        assert "--json goes with --sandbox" in output

    def test_secrets_are_not_logged(
        self, env: dict[str, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            box = _json_run(env)
        secrets = [c["client_secret"] for c in box["clients"].values()]
        logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
        assert not any(s in logged for s in secrets)
