"""No arm and no kit type where a blinded person could read it.

(a) After a scripted mini trial on a fresh, committed database, a dump of the whole
database (pg_dump on PostgreSQL; the file's bytes and `.dump` on SQLite) holds no arm code
or label and no kit type code or description of either example study.
(b) Over a scripted API flow, no response to any blinded role (edc, investigator,
pharmacist, supply manager, admin, auditor) holds one either. Excluded on purpose: exactly
`GET /api/v1/studies/{study}`, whose arm labels the contract publishes to every integration
(which arms exist is public; who got which is not).
(d) An unblinding shows in the audit trail and the outbox (without the arm) and, to a
blinded reader, only as `unblinded: true`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.adapters.api.app import create_app
from app.adapters.api.introspect import api_routes
from app.adapters.db import migrate
from app.adapters.db.engine import make_engine, normalize_url
from app.adapters.db.models import OutboxRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container, bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import blinding, supply
from app.services import randomization as rnd
from app.services.clients import create_client
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR, FreshDatabases


def _secrets() -> tuple[str, ...]:
    found: set[str] = set()
    for path in sorted(STUDIES_DIR.glob("*.toml")):
        study, _document, _sha = read_study_file(path)
        for arm in study.arms:
            found |= {arm.code, arm.label}
        for kit_type in study.kit_types:
            found |= {kit_type.code, kit_type.description}
    return tuple(sorted(found))


# Every arm code and label and every kit type code and description of both example studies.
ARM_SECRETS = _secrets()


def leaked(text: str) -> list[str]:
    """The secrets found in `text`, as written or JSON-escaped, in any letter case."""
    folded = text.casefold()
    return [
        s for s in ARM_SECRETS if s.casefold() in folded or json.dumps(s)[1:-1].casefold() in folded
    ]


def leaked_bytes(data: bytes) -> list[str]:
    folded = data.lower()
    return [s for s in ARM_SECRETS if s.lower().encode() in folded]


A, B = "iris-7a", "iris-7b"
EDC = Principal("edc-leaks", Role.EDC, frozenset({A, B}))
STRATA = [
    {"shock": "yes", "age": "lt65"},
    {"shock": "no", "age": "ge65"},
    {"shock": "yes", "age": "ge65"},
]
REASON = {"reason": "suspected SUSAR"}


def _token(client: TestClient, container: Container, role: Role, **grant: list[str]) -> dict:
    issued = create_client(
        container.uow(TEST_ACTOR),
        container.hasher,
        name=f"{role.value}-{len(grant.get('studies', []))}-{'-'.join(grant.get('sites', []))}",
        role=role,
        studies=[] if role is Role.ADMIN else grant.get("studies", [A, B]),
        sites=grant.get("sites", []),
    )
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": issued.client.client_id,
            "client_secret": issued.secret,
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def mini_trial(container: Container) -> None:
    """Both studies loaded with lists; subjects registered and randomized with the use
    cases; an unblinding (with an Idempotency-Key), a refused one, the exports and a lock
    through the API."""
    for slug in (A, B):
        study, document, sha = read_study_file(STUDIES_DIR / f"{slug}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "leaks", slug)
    places = [(A, "FR01"), (A, "FR02"), (A, "FR03"), (B, "US01"), (B, "US02")]
    for i, (slug, site) in enumerate(places):
        for j, strata in enumerate(STRATA):
            subject_id = f"{site}-{i}{j}"
            rnd.register_subject(container.uow(TEST_ACTOR), EDC, slug, subject_id, site, strata)
            rnd.randomize(container.uow(TEST_ACTOR), EDC, slug, subject_id, None)
    rnd.register_subject(container.uow(TEST_ACTOR), EDC, A, "FR01-waiting", "FR01", STRATA[0])
    statistician = Principal(
        "stat-leaks", Role.UNBLINDED_STATISTICIAN, frozenset({A, B}), issued_at=datetime.now(UTC)
    )
    blinding.unblind(
        container.uow(statistician.actor),
        container.uow(statistician.actor),
        statistician,
        B,
        "US02-41",
        "hospitalised: needs the arm",
    )
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        stat = _token(client, container, Role.UNBLINDED_STATISTICIAN)
        key = {**stat, "Idempotency-Key": "leaks-1"}
        url = f"/api/v1/studies/{A}/subjects/FR01-00/unblinding"
        assert client.post(url, json=REASON, headers=key).status_code == 200
        assert client.post(url, json=REASON, headers=key).status_code == 200
        other_site = _token(client, container, Role.INVESTIGATOR, studies=[A], sites=["FR02"])
        assert client.post(url, json=REASON, headers=other_site).status_code == 404
        assert client.get(f"/api/v1/studies/{A}/randomization-list", headers=stat).is_success
        pooled = client.get(
            "/api/v1/pooled/allocations", params={"studies": f"{A},{B}"}, headers=stat
        )
        assert pooled.is_success
        lock = client.post(f"/api/v1/studies/{B}/lock", json={"reason": "end"}, headers=stat)
        assert lock.status_code == 200
        inv = _token(client, container, Role.INVESTIGATOR, studies=[B], sites=["US01"])
        arm = client.get(f"/api/v1/studies/{B}/subjects/US01-30/arm", headers=inv)
        assert arm.status_code == 200


@pytest.fixture
def fresh_container(
    backend: str,
    fresh_databases: FreshDatabases,
    keys_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Container]]:
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
    url = fresh_databases.create(backend)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = Settings(database_url=url, keys_dir=keys_dir, auth_failure_delay_scale=0)
    container = bootstrap(settings, hasher=FAST_HASHER)
    try:
        yield url, container
    finally:
        container.dispose()


def dump(url: str) -> tuple[str, bytes]:
    """The whole database as text, and (SQLite) the raw bytes of its files."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        with sqlite3.connect(path) as conn:
            text = "\n".join(conn.iterdump())
        raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        return text, raw
    completed = subprocess.run(  # noqa: S603 - fixed arguments, our own test database
        [  # noqa: S607 - pg_dump from PATH, as an operator would run it
            "pg_dump",
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "--no-owner",
            parsed.database or "",
        ],
        capture_output=True,
        check=True,
        timeout=120,
        env={"PGPASSWORD": parsed.password or "", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    return completed.stdout.decode("utf-8"), b""


@pytest.mark.slow
def test_the_database_holds_no_arm_nor_kit_type(
    fresh_container: tuple[str, Container],
) -> None:
    url, container = fresh_container
    mini_trial(container)
    with container.session_factory() as session:
        assert len(session.scalars(select(OutboxRow)).all()) == 2
    container.dispose()
    text, raw = dump(url)
    assert "FR01-00" in text, "the dump does not hold the trial"
    assert "unblinding" in text
    assert leaked(text) == []
    assert leaked_bytes(raw) == []


# --- (b) and (d): blinded responses over the API --------------------------------------------

BLINDED = [
    Role.EDC,
    Role.INVESTIGATOR,
    Role.PHARMACIST,
    Role.SUPPLY_MANAGER,
    Role.ADMIN,
    Role.AUDITOR,
]
STUDY_DETAIL = re.compile(r"^/api/v1/studies/[^/]+$")
FILL = {
    "{stratum}": "FR01|shock=yes|age=lt65",
    "{site_id}": "FR01",
    "{kit_number}": "00000",
    "{shipment_id}": "SH-1",
}


def _concrete(path: str, study: str, subject: str) -> str:
    path = path.replace("{study}", study).replace("{subject_id}", subject)
    for placeholder, value in FILL.items():
        path = path.replace(placeholder, value)
    return path


@pytest.fixture
def api_trial(container: Container, monkeypatch: pytest.MonkeyPatch) -> Container:
    """Both studies loaded, with their lists (in the test's rolled-back transaction)."""
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
    for slug in (A, B):
        study, document, sha = read_study_file(STUDIES_DIR / f"{slug}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "leaks", slug)
    return container


@pytest.fixture
def client(api_trial: Container) -> Iterator[TestClient]:
    with TestClient(create_app(api_trial), raise_server_exceptions=False) as test_client:
        yield test_client


def test_no_blinded_response_holds_an_arm(api_trial: Container, client: TestClient) -> None:
    seen: list[tuple[Role, str, str, int, str]] = []

    def call(role: Role, headers: dict[str, str], method: str, path: str, **kw: object):  # type: ignore[no-untyped-def]
        response = client.request(method, path, headers=headers, **kw)
        if not (method == "GET" and STUDY_DETAIL.match(path.split("?")[0])):
            seen.append((role, method, path, response.status_code, response.text))
        return response

    headers = {
        role: _token(
            client,
            api_trial,
            role,
            studies=[A, B],
            sites=["FR01", "US01"] if role.site_scoped else [],
        )
        for role in BLINDED
    }
    edc, inv = headers[Role.EDC], headers[Role.INVESTIGATOR]
    for who, role, subject in ((edc, Role.EDC, "E-1"), (inv, Role.INVESTIGATOR, "I-1")):
        body = {"subject_id": subject, "site_id": "FR01", "strata": STRATA[0]}
        assert (
            call(role, who, "POST", f"/api/v1/studies/{A}/subjects", json=body).status_code == 201
        )
        randomized = call(
            role, who, "POST", f"/api/v1/studies/{A}/subjects/{subject}/randomization", json={}
        )
        assert randomized.status_code == 201, randomized.text
    body = {"subject_id": "E-2", "site_id": "US01", "strata": STRATA[1]}
    call(Role.EDC, edc, "POST", f"/api/v1/studies/{B}/subjects", json=body)
    call(Role.EDC, edc, "POST", f"/api/v1/studies/{B}/subjects/E-2/randomization", json={})

    # The statistician breaks the code for E-1 (its answer is the one that may hold the arm).
    stat = _token(client, api_trial, Role.UNBLINDED_STATISTICIAN)
    unblinded = client.post(
        f"/api/v1/studies/{A}/subjects/E-1/unblinding", json=REASON, headers=stat
    )
    assert unblinded.status_code == 200
    arm = unblinded.json()["arm"]

    routes = [r for r in api_routes(client.app) if r.method == "GET" and r.path.startswith("/api/")]  # type: ignore[arg-type]
    for role in BLINDED:
        mine = headers[role]
        for route in routes:
            for study, subject in ((A, "E-1"), (A, "I-1"), (B, "E-2")):
                path = _concrete(route.path, study, subject)
                if route.path == "/api/v1/pooled/allocations":
                    path += f"?studies={A},{B}"
                call(role, mine, "GET", path)
        # Refused attempts at what blinded roles may not do, or not yet.
        for subject in ("E-1", "I-1"):
            call(role, mine, "POST", f"/api/v1/studies/{A}/subjects/{subject}/unblinding", json={})
            call(role, mine, "GET", f"/api/v1/studies/{A}/subjects/{subject}/arm")
        call(role, mine, "POST", f"/api/v1/studies/{A}/lock", json={"reason": "no"})
        call(role, mine, "GET", f"/api/v1/studies/{A}/randomization-list?format=csv")

    assert len(seen) > 100
    leaks = [(r.value, m, p, s, leaked(t)) for r, m, p, s, t in seen if leaked(t)]
    assert leaks == []
    flags = [
        json.loads(t)["unblinded"]
        for r, m, p, s, t in seen
        if m == "GET" and p == f"/api/v1/studies/{A}/subjects/E-1" and s == 200
    ]
    assert flags, "no blinded reader read E-1"
    assert all(flags), "a blinded reader of E-1 sees it unblinded, nothing more"
    trail = [t for r, m, p, s, t in seen if p.startswith(f"/api/v1/studies/{A}/audit") and s == 200]
    assert trail
    assert all("subject.unblinded" in t for t in trail)
    assert all(arm not in t for *_, t in seen)

    with api_trial.session_factory() as session:
        [notification] = session.scalars(select(OutboxRow)).all()
    assert notification.payload["subject"] == "E-1"
    assert leaked(json.dumps(notification.payload, ensure_ascii=False)) == []
