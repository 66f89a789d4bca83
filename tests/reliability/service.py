"""A real service for the reliability suite: a fresh PostgreSQL database prepared in-process
(study, list, kits received at the sites, API clients), served by `iwrs serve` with several
uvicorn workers in a subprocess on a loopback port, its JSON logs captured to files.

Shared by every test of the suite, as bench/bench_api.py prepares and serves its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import Container, bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.clients import create_client
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0  # seconds: generous (a shared 2-core machine), but bounded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def study_document(slug: str = "iris-7a", **changes: Any) -> dict[str, Any]:
    """The example study's definition, with `supply_levels` (one level for every kit type),
    `cap` (slots per stratum) or `active_sites` changed."""
    doc = tomllib.loads((STUDIES_DIR / f"{slug}.toml").read_text(encoding="utf-8"))
    if "supply_level" in changes:
        level = changes["supply_level"]
        for code in doc["supply"]["levels"]:
            doc["supply"]["levels"][code] = {
                "initial": level,
                "trigger": max(1, level // 4),
                "resupply": level,
            }
        doc["supply"]["kits_per_lot"] = max(doc["supply"]["kits_per_lot"], 10 * level)
    if "cap" in changes:
        doc["randomization"]["cap_per_stratum"] = changes["cap"]
    if "active_sites" in changes:
        for site in doc["sites"]:
            site["active"] = site["code"] in changes["active_sites"]
    return doc


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str
    role: Role


class Service:
    """One fresh service: prepare it in-process, then start() and stop() its server."""

    def __init__(self, database_url: str, keys_dir: Path, workdir: Path) -> None:
        self.database_url = database_url
        self.keys_dir = keys_dir
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clock_file = workdir / "clock"
        self.stdout_path = workdir / "server.stdout"
        self.stderr_path = workdir / "server.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.engine: Engine = make_engine(database_url)
        migrate.upgrade(self.engine)
        self.container: Container = bootstrap(
            Settings(database_url=database_url, keys_dir=keys_dir, auth_failure_delay_scale=0),
            engine=self.engine,
            hasher=FAST_HASHER,
        )
        self._tokens: dict[str, str] = {}

    # --- preparation, in-process --------------------------------------------------------------

    def load(self, doc: dict[str, Any], receive: bool = True) -> list[str]:
        """Load a study, generate its list and kits, receive the initial shipments; returns
        the active sites."""
        parsed = parse_document(doc, doc["slug"])
        study = to_domain(parsed)
        document, _raw, sha = canonical(parsed)
        slug = study.slug
        load_study(self.container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(self.container.uow(TEST_ACTOR), TEST_ACTOR.actor_id, slug)
        kits = supply.generate_kits(self.container.uow(TEST_ACTOR), slug)
        if receive:
            for shipment in kits.shipments:
                pharmacist = Principal(
                    "reliability",
                    Role.PHARMACIST,
                    frozenset({slug}),
                    {slug: frozenset({shipment.site})},
                )
                supply.receive_shipment(
                    self.container.uow(TEST_ACTOR), pharmacist, slug, shipment.code, []
                )
        return [s.code for s in study.sites if s.active]

    def register(self, slug: str, subject_id: str, site: str, strata: dict[str, str]) -> None:
        edc = Principal("reliability-edc", Role.EDC, frozenset({slug}))
        rnd.register_subject(self.container.uow(TEST_ACTOR), edc, slug, subject_id, site, strata)

    def client(
        self, role: Role, studies: list[str], sites: list[str] | None = None, name: str = ""
    ) -> Credentials:
        issued = create_client(
            self.container.uow(TEST_ACTOR),
            self.container.hasher,
            name=name or f"{role.value}-{len(self._tokens)}-{time.monotonic_ns()}",
            role=role,
            studies=[] if role is Role.ADMIN else studies,
            sites=sites or [],
        )
        return Credentials(issued.client.client_id, issued.secret, role)

    # --- the server ---------------------------------------------------------------------------

    def env(self, **extra: str | None) -> dict[str, str]:
        """The server's environment; an `extra` of None removes that variable."""
        env = {
            **os.environ,
            "IWRS_DATABASE_URL": self.database_url,
            "IWRS_KEYS_DIR": str(self.keys_dir),
            "IWRS_HOST": "127.0.0.1",
            "IWRS_PORT": str(self.port),
            "IWRS_LOG_LEVEL": "INFO",
            "IWRS_LOG_FORMAT": "json",
            "IWRS_AUTH_FAILURE_DELAY_SCALE": "0",
            "IWRS_SIMULATION_CLOCK_FILE": str(self.clock_file),
        }
        env.update({k: v for k, v in extra.items() if v is not None})
        return {k: v for k, v in env.items() if extra.get(k, "") is not None}

    def iwrs(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        """Run the `iwrs` command line against this service's database and keys."""
        return subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [sys.executable, "-m", "app.adapters.cli.main", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=ROOT,
        )

    def start(self, workers: int = 2, **env: str | None) -> None:
        self.container.dispose()  # the server's connections only, from here on
        with self.stdout_path.open("ab") as stdout, self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "app.adapters.cli.main", "serve", "--workers", str(workers)],
                env=self.env(**env),
                stdout=stdout,
                stderr=stderr,
                cwd=ROOT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.logs()[-2000:]}")
            try:
                response = httpx.get(f"{self.url}/ready", timeout=5)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready within {timeout}s: {last}")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor started by spawn)."""
        assert self.process is not None
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if b"spawn_main" in cmdline:
                    pids.append(int(child))
        return sorted(pids)

    def wait_workers(self, count: int, timeout: float = READY_TIMEOUT) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} workers after {timeout}s: {self.worker_pids()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self.container.dispose()
        self.engine.dispose()

    def logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path)]
        return "\n".join(p for p in parts if p)

    # --- HTTP ---------------------------------------------------------------------------------

    def token(self, creds: Credentials, fresh: bool = False) -> str:
        if fresh or creds.client_id not in self._tokens:
            response = httpx.post(
                f"{self.url}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": creds.client_id,
                    "client_secret": creds.client_secret,
                },
                timeout=30,
            )
            assert response.status_code == 200, response.text
            self._tokens[creds.client_id] = response.json()["access_token"]
        return self._tokens[creds.client_id]

    def headers(self, creds: Credentials, fresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(creds, fresh)}"}

    def advance_clock(self, days: float) -> None:
        """Move the simulation clock every worker reads (a file: see app.adapters.clock)."""
        current = float(self.clock_file.read_text() or 0) if self.clock_file.exists() else 0.0
        self.clock_file.write_text(str(current + days * 86400), encoding="utf-8")
