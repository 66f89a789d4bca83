"""The database and the key under faults.

- The PostgreSQL server stopped and started again in the middle of load: while it is down
  every answer is a clear 503 (`database_unavailable`), never a 500 nor a hang; when it is
  back the same server processes (no restart of the service) serve again, and every subject
  is randomized exactly once (retried with its Idempotency-Key).
- The key missing: `iwrs serve` refuses to start and says why; a server started without it
  anyway (the ASGI factory, bypassing the preflight) is not ready and answers 503
  `key_unavailable` rather than anything else.
- The database read-only: a clear 503 `database_read_only`, nothing half-written; writable
  again, the service carries on.
- The disk full: the study's database lives in a tablespace on a small tmpfs of its own,
  filled up under load: a clear 503 `storage_full`, nothing half-written; with room again,
  the service carries on. (The server's own data directory and WAL stay on their disk: a
  full WAL disk makes PostgreSQL itself stop, which is the 503 tested with the server down.)
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.adapters.db.engine import normalize_url
from app.domain.roles import Role
from tests.conftest import POSTGRES_URL
from tests.reliability.checks import (
    assert_audit_verifies,
    assert_slots_are_a_prefix,
    whole_or_nothing,
)
from tests.reliability.service import Service, free_port, study_document

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STUDY, SITE = "iris-7a", "FR01"
STRATA = {"shock": "yes", "age": "lt65"}
STRATUM = f"{SITE}|shock=yes|age=lt65"
PROBLEM = "application/problem+json"


def _randomize(
    http: httpx.Client, subject_id: str, key: str | None = None, weight: float = 70
) -> httpx.Response:
    return http.post(
        f"/api/v1/studies/{STUDY}/subjects/{subject_id}/randomization",
        json={"weight_kg": weight},
        headers={"Idempotency-Key": key or f"fault-{subject_id}"},
    )


# --- the database server restarted --------------------------------------------------------


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster serving the tests, when this machine runs it."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    host = make_url(normalize_url(POSTGRES_URL)).host
    if host not in ("127.0.0.1", "localhost", None):
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    return (versions[-1], "main") if versions else None


def _pg_ctl(action: str) -> None:
    cluster = _cluster()
    assert cluster is not None
    fast = ["-m", "fast"] if action == "stop" else []
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *fast]
    subprocess.run(command, check=True, timeout=60, capture_output=True)  # noqa: S603 - local


def _wait_postgres(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"],  # noqa: S607 - from PATH
            check=False,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back")


def test_the_database_restarted_mid_load(service: Service) -> None:
    if os.environ.get("IWRS_TEST_PG_RESTART") != "1":
        # Stopping the cluster cuts off whoever else uses it: only where asked (.ci/run).
        pytest.skip("set IWRS_TEST_PG_RESTART=1 to let this test restart the local cluster")
    if _cluster() is None:
        pytest.fail("IWRS_TEST_PG_RESTART=1 but there is no local cluster (pg_ctlcluster)")
    ids = [f"PG-{i:02d}" for i in range(24)]
    service.load(study_document(STUDY, supply_level=60, cap=36, active_sites=[SITE]))
    for subject_id in ids:
        service.register(STUDY, subject_id, SITE, STRATA)
    edc = service.client(Role.EDC, [STUDY])
    service.start(workers=2)
    workers = service.wait_workers(2)
    token = service.token(edc)

    statuses: list[int] = []
    problems: list[str] = []
    answered = threading.Event()

    def load(mine: list[str]) -> None:
        # As an EDC would: retry on 503 or a lost connection, with the same key, for a while.
        with httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            for subject_id in mine:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        response = _randomize(http, subject_id)
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        answered.set()
                        break
                    if response.status_code != 503 or time.monotonic() > deadline:
                        problems.append(f"{subject_id}: {response.status_code} {response.text}")
                        break
                    assert response.headers["content-type"] == PROBLEM
                    time.sleep(0.2)
                time.sleep(0.05)  # a realistic pace: the load spans the restart

    threads = [threading.Thread(target=load, args=(ids[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    assert answered.wait(60)
    try:
        _pg_ctl("stop")
        down_ready = httpx.get(f"{service.url}/ready", timeout=30)
        with httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            down = _randomize(http, ids[0], key="while-down")
    finally:
        _pg_ctl("start")
        _wait_postgres()
    for thread in threads:
        thread.join(timeout=180)

    assert down_ready.status_code == 503
    assert down_ready.json()["checks"]["database"].startswith("unreachable")
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == PROBLEM
    assert down.json()["code"] == "database_unavailable"
    assert problems == []
    assert set(statuses) <= {201, 503}
    service.wait_ready()
    assert service.worker_pids() == workers, "the service was restarted"
    trial = whole_or_nothing(service.engine, STUDY)
    assert trial.randomized == set(ids)
    assert_slots_are_a_prefix(service.engine, STRATUM, len(ids))
    assert_audit_verifies(service)


# --- the key missing ----------------------------------------------------------------------


def test_serve_refuses_to_start_without_the_key(service: Service, tmp_path: Path) -> None:
    service.load(study_document(STUDY, active_sites=[SITE]))
    service.container.dispose()
    empty = tmp_path / "no-keys"
    empty.mkdir()
    result = service.iwrs("serve", IWRS_KEYS_DIR=str(empty))
    assert result.returncode != 0
    assert "key" in (result.stdout + result.stderr).lower()


def test_a_server_without_the_key_is_not_ready_and_says_so(
    service: Service, tmp_path: Path
) -> None:
    service.load(study_document(STUDY, active_sites=[SITE]))
    service.register(STUDY, "K-1", SITE, STRATA)
    edc = service.client(Role.EDC, [STUDY])
    service.container.dispose()
    empty = tmp_path / "no-keys"
    empty.mkdir()
    port = free_port()
    log = (tmp_path / "nokey.log").open("wb")
    with log:
        server = subprocess.Popen(  # noqa: S603 - our own ASGI factory, bypassing `iwrs serve`
            [
                *(sys.executable, "-m", "uvicorn", "app.adapters.api.asgi:factory", "--factory"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            env=service.env(IWRS_KEYS_DIR=str(empty)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx.get(f"{base}/ready", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        if ready is None:
            # Refusing to start at all is a clear refusal too.
            assert server.poll() not in (None, 0)
            return
        assert ready.status_code == 503
        assert ready.headers["content-type"] == PROBLEM
        assert ready.json()["code"] == "not_ready"
        assert ready.json()["checks"]["key"].startswith("unavailable")
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        token = httpx.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": edc.client_id,
                "client_secret": edc.client_secret,
            },
            timeout=30,
        )
        assert token.status_code == 503, token.text
        assert token.json()["code"] == "key_unavailable"
    finally:
        server.terminate()
        server.wait(timeout=30)
    trial = whole_or_nothing(service.engine, STUDY)
    assert trial.registered == {"K-1"}


# --- the database read-only ---------------------------------------------------------------


def _set_read_only(url: str, on: bool) -> None:
    """Make the database read-only for every new session, and end the current ones."""
    name = make_url(url).database
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        value = "on" if on else "off"
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}'))
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    admin.dispose()


def test_a_read_only_database_gets_a_clear_error_and_nothing_half_written(
    service: Service,
) -> None:
    ids = [f"RO-{i:02d}" for i in range(4)]
    service.load(study_document(STUDY, supply_level=60, cap=36, active_sites=[SITE]))
    for subject_id in ids:
        service.register(STUDY, subject_id, SITE, STRATA)
    edc = service.client(Role.EDC, [STUDY])
    service.start(workers=1)
    token = service.token(edc)
    with httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        assert _randomize(http, ids[0]).status_code == 201
        _set_read_only(service.database_url, True)
        try:
            refused = [_randomize(http, subject_id) for subject_id in ids[1:3]]
            service.engine.dispose()
            trial = whole_or_nothing(service.engine, STUDY)
        finally:
            _set_read_only(service.database_url, False)
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["code"] == "database_read_only"
        assert trial.randomized == {ids[0]}
        assert_slots_are_a_prefix(service.engine, STRATUM, 1)

        # Writable again: the same keys go through, once.
        for subject_id in ids[1:]:
            assert _randomize(http, subject_id).status_code == 201
    assert whole_or_nothing(service.engine, STUDY).randomized == set(ids)
    assert_slots_are_a_prefix(service.engine, STRATUM, len(ids))
    assert_audit_verifies(service)


# --- the disk full -----------------------------------------------------------------------

TABLESPACE_MB = 24  # room for a fresh database (a copy of template1) and the study


@contextmanager
def _small_tablespace() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL tablespace on a tmpfs of its own (needs root to mount): a database in it
    can fill its disk without touching the server's data directory nor its WAL."""
    cluster = _cluster()
    if cluster is None or os.geteuid() != 0:
        pytest.skip("a full disk needs a local cluster and root, to mount a small tmpfs")
    postgres = pwd.getpwnam("postgres")
    # Under /tmp itself: the postgres user must reach it (pytest's own tmp_path is root's).
    mount = Path(tempfile.mkdtemp(prefix="iwrs-small-disk-"))
    options = f"size={TABLESPACE_MB}m,uid={postgres.pw_uid},gid={postgres.pw_gid},mode=0700"
    mounted = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],  # noqa: S607
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    tablespace = f"iwrs_small_{os.getpid()}_{secrets.token_hex(3)}"
    location = mount / "pg"
    location.mkdir()
    os.chown(location, postgres.pw_uid, postgres.pw_gid)
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE TABLESPACE {tablespace} LOCATION '{location}'"))
            conn.execute(text(f'CREATE DATABASE "{tablespace}" TABLESPACE {tablespace}'))
        url = (
            make_url(normalize_url(POSTGRES_URL))
            .set(database=tablespace)
            .render_as_string(hide_password=False)
        )
        yield url, mount
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{tablespace}" WITH (FORCE)'))
            conn.execute(text(f"DROP TABLESPACE IF EXISTS {tablespace}"))
        admin.dispose()
        subprocess.run(["umount", str(mount)], check=False)  # noqa: S603, S607 - ours
        mount.rmdir()


def _fill(mount: Path, leave_kb: int) -> Path:
    """Fill the disk but `leave_kb`. PostgreSQL may write into it meanwhile (a checkpoint
    flushing pages), so the filler is written a megabyte at a time, stops where the disk
    does, and is cut back until `leave_kb` are free again."""
    filler = mount / "filler"
    leave = leave_kb * 1024
    with filler.open("wb", buffering=0) as out:
        while (free := shutil.disk_usage(mount).free) > leave:
            try:
                out.write(b"\0" * min(1 << 20, free - leave))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    short = leave - shutil.disk_usage(mount).free
    if short > 0:
        os.truncate(filler, max(0, filler.stat().st_size - short))
    return filler


def test_a_full_disk_gets_a_clear_error_and_nothing_half_written(
    keys_dir: Path, tmp_path: Path
) -> None:
    ids = [f"DF-{i:02d}" for i in range(30)]
    with _small_tablespace() as (url, mount):
        service = Service(url, keys_dir, tmp_path)
        try:
            service.load(study_document(STUDY, supply_level=60, cap=36, active_sites=[SITE]))
            for subject_id in ids:
                service.register(STUDY, subject_id, SITE, STRATA)
            edc = service.client(Role.EDC, [STUDY])
            service.start(workers=1)
            token = service.token(edc)
            answers: list[httpx.Response] = []
            with httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http:
                filler = _fill(mount, leave_kb=64)
                for subject_id in ids[:20]:
                    answers.append(_randomize(http, subject_id))
                full = [r for r in answers if r.status_code != 201]
                assert full, "the disk never filled"
                for response in full:
                    assert response.status_code == 503, response.text
                    assert response.headers["content-type"] == PROBLEM
                    assert response.json()["code"] == "storage_full"
                trial = whole_or_nothing(service.engine, STUDY)
                assert len(trial.randomized) == len(answers) - len(full)
                assert_slots_are_a_prefix(service.engine, STRATUM, len(trial.randomized))

                # Room again: the service carries on without a restart.
                filler.unlink()
                for subject_id in ids:
                    assert _randomize(http, subject_id).status_code == 201
            final = whole_or_nothing(service.engine, STUDY)
            assert final.randomized == set(ids)
            assert_slots_are_a_prefix(service.engine, STRATUM, len(ids))
            assert_audit_verifies(service)
        finally:
            service.close()
