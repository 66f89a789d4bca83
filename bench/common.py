"""Shared by the benchmarks: a fresh database, keys, a synthetic study, JSON results."""

from __future__ import annotations

import json
import os
import platform
import secrets
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# PostgreSQL on this machine through its Unix socket when it has one, as a service on the
# same host as its database connects (measured in one process against the loopback TCP
# connection, in alternate blocks: 7 % less CPU a randomization, 9 % a dispensing, service
# and PostgreSQL together), else 127.0.0.1:5432. IWRS_BENCH_POSTGRES_URL sets another.
SOCKET_DIR = "/var/run/postgresql"


def _default_url() -> str:
    if os.path.exists(f"{SOCKET_DIR}/.s.PGSQL.5432"):
        return f"postgresql+psycopg://postgres@/test?host={SOCKET_DIR}"
    return "postgresql+psycopg://postgres@127.0.0.1:5432/test"


ADMIN_URL = os.environ.get("IWRS_BENCH_POSTGRES_URL") or _default_url()


def libpq_host(url: str) -> str:
    """The host (or socket directory) a URL connects to, as libpq and pgbench take it."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")
    return str(host) if isinstance(host, str) and host else "127.0.0.1"


def postgres_via(url: str = ADMIN_URL) -> str:
    """How the benchmarks reach PostgreSQL, printed with their figures."""
    host = libpq_host(url)
    if host.startswith("/"):
        return f"Unix socket in {host}"
    return f"TCP {host}:{make_url(url).port or 5432}"


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new empty database (dropped afterwards): a PostgreSQL database or a SQLite file."""
    name = f"iwrs_bench_{secrets.token_hex(4)}"
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/{name}.db"
        return
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def synthetic_study(sites: int, cap: int) -> dict[str, Any]:
    """IRIS-7A with `sites` sites (x 4 strata each) and `cap` slots per stratum."""
    doc = tomllib.loads((ROOT / "studies" / "iris-7a.toml").read_text(encoding="utf-8"))
    doc["slug"] = "bench"
    doc["pooled_with"] = []
    doc["sites"] = [
        {"code": f"BX{i:04d}", "name": f"Bench site {i}", "country": "FR", "depot": "FR_DEPOT"}
        for i in range(1, sites + 1)
    ]
    doc["randomization"]["cap_per_stratum"] = cap
    return doc


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and write them as JSON under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "figures": figures,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(f"(written to {RESULTS / (name + '.json')})")


def versus(value: float, target: float, lower_is_better: bool = True) -> str:
    """How far a figure is from its target, in words."""
    if lower_is_better:
        verdict = "meets" if value <= target else "misses"
        return f"{value:.2f} (target <= {target}: {verdict}, {value / target:.0%} of it)"
    verdict = "meets" if value >= target else "misses"
    return f"{value:.1f} (target >= {target}: {verdict}, {value / target:.0%} of it)"
