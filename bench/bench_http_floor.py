"""The floors under the API's figures on the service's side: an HTTP endpoint that does
nothing, and the database driver running a randomization's number of statements.

Run: .venv/bin/python bench/bench_http_floor.py [--clients 16 --workers 2 --requests 6000]

The same server (uvicorn with httptools and uvloop, `--workers` processes), the same kind of
endpoint as the service's (FastAPI, a plain `def` run on the thread pool, a JSON body read
by pydantic, a JSON answer with 201) and the same load generator (bench/loadgen.py) as
bench_api, but no authentication, no database and no domain work. What one request costs
here, the service's requests cost before they do anything, so bench_api's figures cannot
pass this one's on the same machine.

The driver's floor: psycopg (as the service uses it, C build) runs 15 statements and a COMMIT
in 8 round trips, as one randomization does (7 reads of one row, then 8 writes in one
pipeline), on a 200-row table of a fresh database, 1,000 times in turn; the client CPU per
transaction is the least any Python service pays to send a randomization's statements,
before any ORM, domain, cryptography or audit work. With bench_cpu's PostgreSQL CPU and
this endpoint's, it bounds what the stack can do on this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_api import _cpu_per_request, _free_port
from bench.common import ROOT, fresh_database, libpq_host, postgres_via, report, versus
from bench.loadgen import run_load, wait_until_ready


class Body(BaseModel):
    weight_kg: float


app = FastAPI()


@app.post("/nothing/{item}", status_code=201)
def nothing(item: str, body: Body) -> dict[str, Any]:
    return {"item": item, "weight_kg": body.weight_kg}


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}


def driver_floor(url: str, transactions: int = 1000) -> dict[str, float]:
    """Client CPU and wall time (ms) of a randomization's 16 statements through psycopg."""
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    with psycopg.connect(
        host=libpq_host(url),
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        dbname=target.database,
    ) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, a text, b bytea, d date)")
        conn.execute(
            "INSERT INTO t SELECT g, 'x' || g, '\\xabab'::bytea, current_date "
            "FROM generate_series(1, 200) g"
        )
        conn.commit()

        read = "SELECT id, a, b, d FROM t WHERE id = %(id)s"
        write = "UPDATE t SET a = %(a)s WHERE id = %(id)s"

        def one() -> None:
            for i in range(7):
                conn.execute(read, {"id": i + 1}).fetchall()
            with conn.pipeline():
                for i in range(8):
                    conn.execute(write, {"a": "y", "id": i + 10})
            conn.commit()

        for _ in range(transactions // 5):
            one()  # warm-up: statements prepared, caches full
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(transactions):
            one()
        return {
            "cpu_ms": 1000 * (time.process_time() - cpu) / transactions,
            "wall_ms": 1000 * (time.perf_counter() - wall) / transactions,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=6000)
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - uvicorn serving this module's app
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bench_http_floor:app",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base)
        items = [str(i) for i in range(args.requests)]

        def load() -> dict[str, Any]:
            return run_load(
                base, "none", items, args.clients, lambda i: (f"/nothing/{i}", {"weight_kg": 70})
            )

        load()  # warm-up
        found = _cpu_per_request(server.pid, load)
    finally:
        server.terminate()
        server.wait(timeout=20)
    with fresh_database("postgres") as url:
        driver = driver_floor(url)
    report(
        "http_floor",
        {
            "clients": args.clients,
            "server_workers": args.workers,
            "requests": found["requests"],
            "failures": found["failures"],
            "requests_per_s": versus(found["per_s"], 400, lower_is_better=False),
            "p50_ms": round(found["p50_ms"], 1),
            "p99_ms": versus(found["p99_ms"], 100),
            "cpu_server_ms": found["cpu_server_ms"],
            "cpu_loadgen_ms": found["cpu_loadgen_ms"],
            "first_failure": found["first_failure"],
            "driver_cpu_ms_per_randomization_statements": round(driver["cpu_ms"], 2),
            "driver_wall_ms_one_client": round(driver["wall_ms"], 2),
            "postgres_via": postgres_via(),
        },
    )


if __name__ == "__main__":
    main()
